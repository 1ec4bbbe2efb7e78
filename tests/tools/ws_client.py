#!/usr/bin/env python3
"""A tiny WebSocket client (RFC 6455, Python standard library only) for
testing GET /v1/changes of stockflow-query.

It performs the handshake (and checks Sec-WebSocket-Accept), then prints
every text message it receives as one line on stdout, answers pings with
pongs, reassembles fragmented messages, and prints the close frame it gets
("# close <code> <reason>"). It stops after --count change messages, after
--seconds, or when the server closes; with --close it then sends a close
frame of its own and waits for the server's answer.

Examples:
  ws_client.py --port 8082 --path '/v1/changes?after=0' --count 3
  ws_client.py --port 8082 --path '/v1/changes?snapshot=true&store_id=...'

Exit status: 0 when the stream behaved (handshake ok), 1 otherwise. With
--expect-status N the handshake answer must have status N instead (the
first line and the body are printed), e.g. 410 for an expired cursor.
"""
import argparse
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def send_frame(sock, opcode, payload=b""):
    """Sends one masked client frame."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(head + mask + masked)


def read_frame(sock):
    """Returns (fin, opcode, payload) of one server frame (never masked)."""
    b0, b1 = recv_exact(sock, 2)
    fin, opcode = b0 & 0x80, b0 & 0x0F
    if b1 & 0x80:
        raise ValueError("server frame is masked")
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(sock, 8))[0]
    return bool(fin), opcode, recv_exact(sock, n)


def handshake(sock, host, port, path, extra_headers):
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ] + extra_headers
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError("closed during the handshake")
        head += chunk
    text = head.decode("latin-1")
    status = int(text.split(" ", 2)[1])
    headers = {}
    for line in text.split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    if status == 101:
        want = base64.b64encode(
            hashlib.sha1((key + GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != want:
            raise ValueError("bad Sec-WebSocket-Accept")
    return status, text, headers


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8082)
    ap.add_argument("--path", default="/v1/changes")
    ap.add_argument("--header", action="append", default=[],
                    help="extra request header, e.g. 'Last-Event-ID: 5'")
    ap.add_argument("--count", type=int, default=0,
                    help="stop after this many change messages (0: no limit)")
    ap.add_argument("--seconds", type=float, default=10.0,
                    help="stop after this long")
    ap.add_argument("--close", action="store_true",
                    help="send a close frame at the end and wait for the answer")
    ap.add_argument("--ping", action="store_true",
                    help="send a ping first and expect its pong")
    ap.add_argument("--expect-status", type=int, default=101)
    args = ap.parse_args()

    sock = socket.create_connection((args.host, args.port), timeout=5)
    status, head, _ = handshake(sock, args.host, args.port, args.path,
                                args.header)
    if status != 101:
        print(head.split("\r\n")[0])
        sock.settimeout(2)
        try:
            print(sock.recv(65536).decode(errors="replace"))
        except OSError:
            pass
        return 0 if status == args.expect_status else 1
    if args.expect_status != 101:
        print(f"# expected {args.expect_status}, got 101")
        return 1

    if args.ping:
        send_frame(sock, 0x9, b"hello")
    deadline = time.monotonic() + args.seconds
    changes = 0
    parts, msg_op = [], None
    closed_by_server = False
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                fin, op, payload = read_frame(sock)
            except socket.timeout:
                break
            if op == 0x9:  # ping from the server (heartbeat)
                print("# ping")
                send_frame(sock, 0xA, payload)
                continue
            if op == 0xA:
                print(f"# pong {payload.decode(errors='replace')}")
                continue
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                print(f"# close {code} {payload[2:].decode(errors='replace')}")
                closed_by_server = True
                if not args.close:
                    send_frame(sock, 0x8, payload[:2])
                break
            if op in (0x1, 0x2):
                parts, msg_op = [payload], op
            elif op == 0x0:
                parts.append(payload)
            if fin:
                text = b"".join(parts).decode()
                print(text)
                sys.stdout.flush()
                if msg_op == 0x1 and json.loads(text).get("type") == "change":
                    changes += 1
                    if args.count and changes >= args.count:
                        break
        if args.close and not closed_by_server:
            send_frame(sock, 0x8, struct.pack("!H", 1000) + b"bye")
            sock.settimeout(3)
            while True:
                fin, op, payload = read_frame(sock)
                if op == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    print(f"# close {code} (answer)")
                    break
    except EOFError:
        print("# eof")
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
