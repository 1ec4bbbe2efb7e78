/* qry_ws: the WebSocket side of change streams (RFC 6455), independent of
 * the socket.
 *
 * qry_ws_accept_key computes the handshake answer (Sec-WebSocket-Accept).
 * A qry_ws_t wraps a libwslay server context: the caller feeds it the bytes
 * the peer sent (qry_ws_feed) and gives it a write function that receives
 * every frame byte the server sends; wslay answers pings with pongs, checks
 * masking and frame rules, and runs the close handshake. Messages from the
 * client are read and ignored (the stream is one-way). Frames are written
 * at once (wslay's queue is flushed after every call), so the bytes not yet
 * on the wire are the ones the write function holds.
 *
 * Loop thread only; not thread-safe. Memory policy: out of memory fails the
 * call with SF_ENOMEM and the caller drops the connection. */
#ifndef QRY_WS_H
#define QRY_WS_H

#include <stddef.h>
#include <stdint.h>

/* Length of a Sec-WebSocket-Accept value (base64 of 20 bytes). */
#define QRY_WS_ACCEPT_LEN 28

/* Computes Sec-WebSocket-Accept for the client's Sec-WebSocket-Key: base64
 * of SHA-1 of the key followed by the RFC 6455 GUID. The key must be the
 * base64 of 16 bytes (24 characters); anything else is SF_EINVAL. out gets
 * QRY_WS_ACCEPT_LEN characters and a NUL. Returns 0, SF_EINVAL or
 * SF_ENOMEM (libcrypto could not allocate its digest context). */
int qry_ws_accept_key(const char *key, char out[QRY_WS_ACCEPT_LEN + 1]);

typedef struct qry_ws qry_ws_t;

/* Receives frame bytes to send, borrowed for the call; returns 0, or
 * non-zero when the bytes cannot be sent (the connection is then failed). */
typedef int (*qry_ws_write_fn)(void *ud, const uint8_t *data, size_t len);

/* Creates a server-side connection writing through write(ud, ...).
 * Returns 0 or SF_ENOMEM. */
int qry_ws_new(qry_ws_t **out, qry_ws_write_fn write, void *ud);
void qry_ws_destroy(qry_ws_t *ws);

/* Sends one text message (copied). Returns 0, SF_ESTATE (a close frame was
 * already sent), SF_EIO (the write function failed) or SF_ENOMEM. */
int qry_ws_send_text(qry_ws_t *ws, const char *data, size_t len);

/* Sends a ping (heartbeat). Same returns as qry_ws_send_text. */
int qry_ws_send_ping(qry_ws_t *ws);

/* Sends a close frame with code and a short reason (may be NULL). Nothing
 * can be sent after it. Same returns as qry_ws_send_text. */
int qry_ws_send_close(qry_ws_t *ws, uint16_t code, const char *reason);

typedef enum qry_ws_state {
  QRY_WS_OPEN = 0, /* go on */
  QRY_WS_CLOSED    /* the peer closed, or broke the protocol: the closing
                      frame was written; end the connection */
} qry_ws_state_t;

/* Receives one complete text message of the client (borrowed for the
 * call); returns 0, or non-zero to fail the connection. */
typedef int (*qry_ws_text_fn)(void *ud, const char *data, size_t len);

/* Makes ws deliver the client's text messages (up to max_len bytes each; a
 * longer one fails the connection with close code 1009) to text(ud, ...)
 * instead of dropping them (a two-way protocol: Parse LiveQuery). The
 * callback runs inside qry_ws_feed and may send. */
void qry_ws_on_text(qry_ws_t *ws, qry_ws_text_fn text, size_t max_len);

/* Feeds len bytes the peer sent. Pings are answered, client messages are
 * dropped unless qry_ws_on_text asked for them. Returns QRY_WS_OPEN, QRY_WS_CLOSED, or SF_EIO / SF_ENOMEM (drop
 * the connection). */
int qry_ws_feed(qry_ws_t *ws, const char *data, size_t len);

#endif
