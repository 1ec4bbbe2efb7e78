/* qry_ws: WebSocket handshake key and a libwslay server context behind a
 * byte-in / byte-out interface. See qry_ws.h.
 *
 * SHA-1 comes from OpenSSL's libcrypto (libpq and librdkafka link it
 * already; libsodium has no SHA-1); it is used only for
 * Sec-WebSocket-Accept, never for security. */
#include "qry_ws.h"

#include <openssl/evp.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <wslay/wslay.h>

#include "sf/err.h"

/* ---- handshake ---- */

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

int qry_ws_accept_key(const char *key, char out[QRY_WS_ACCEPT_LEN + 1]) {
  if (!key || strlen(key) != 24)
    return SF_EINVAL;
  unsigned char raw[18];
  size_t raw_len = 0;
  const char *end = NULL;
  if (sodium_base642bin(raw, sizeof(raw), key, 24, NULL, &raw_len, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != key + 24 || raw_len != 16)
    return SF_EINVAL;
  char buf[24 + sizeof(WS_GUID)];
  memcpy(buf, key, 24);
  memcpy(buf + 24, WS_GUID, sizeof(WS_GUID) - 1);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (EVP_Digest(buf, 24 + sizeof(WS_GUID) - 1, digest, &digest_len,
                 EVP_sha1(), NULL) != 1 ||
      digest_len != 20)
    return SF_ENOMEM; /* libcrypto fails only when it cannot allocate */
  sodium_bin2base64(out, QRY_WS_ACCEPT_LEN + 1, digest, digest_len,
                    sodium_base64_VARIANT_ORIGINAL);
  return 0;
}

/* ---- the connection ---- */

/* Largest message accepted from a client (they have nothing to say). */
#define WS_MAX_RECV 4096

struct qry_ws {
  wslay_event_context_ptr ctx;
  qry_ws_write_fn write;
  void *ud;
  const uint8_t *in; /* bytes being fed, borrowed during qry_ws_feed */
  size_t in_len;
  bool write_failed;
  qry_ws_text_fn text; /* NULL: client messages are dropped */
  bool text_failed;    /* text() refused a message */
};

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *user_data) {
  (void)flags;
  qry_ws_t *ws = user_data;
  if (ws->in_len == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t n = len < ws->in_len ? len : ws->in_len;
  memcpy(buf, ws->in, n);
  ws->in += n;
  ws->in_len -= n;
  return (ssize_t)n;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data,
                       size_t len, int flags, void *user_data) {
  (void)flags;
  qry_ws_t *ws = user_data;
  if (ws->write(ws->ud, data, len) != 0) {
    ws->write_failed = true;
    wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
  }
  return (ssize_t)len;
}

static void on_msg_cb(wslay_event_context_ptr ctx,
                      const struct wslay_event_on_msg_recv_arg *arg,
                      void *user_data) {
  /* Client messages carry nothing for a one-way stream; control frames
   * (ping, close) are handled by wslay itself. */
  qry_ws_t *ws = user_data;
  if (!ws->text || ws->text_failed || arg->opcode != WSLAY_TEXT_FRAME)
    return;
  if (ws->text(ws->ud, (const char *)arg->msg, arg->msg_length) != 0) {
    ws->text_failed = true;
    wslay_event_queue_close(ctx, 1011, NULL, 0);
  }
}

void qry_ws_on_text(qry_ws_t *ws, qry_ws_text_fn text, size_t max_len) {
  ws->text = text;
  wslay_event_config_set_max_recv_msg_length(ws->ctx, max_len);
}

int qry_ws_new(qry_ws_t **out, qry_ws_write_fn write, void *ud) {
  if (!out || !write)
    return SF_EINVAL;
  qry_ws_t *ws = calloc(1, sizeof(*ws));
  if (!ws)
    return SF_ENOMEM;
  ws->write = write;
  ws->ud = ud;
  struct wslay_event_callbacks cbs = {
      .recv_callback = recv_cb,
      .send_callback = send_cb,
      .on_msg_recv_callback = on_msg_cb,
  };
  if (wslay_event_context_server_init(&ws->ctx, &cbs, ws) != 0) {
    free(ws);
    return SF_ENOMEM;
  }
  wslay_event_config_set_max_recv_msg_length(ws->ctx, WS_MAX_RECV);
  *out = ws;
  return 0;
}

void qry_ws_destroy(qry_ws_t *ws) {
  if (!ws)
    return;
  wslay_event_context_free(ws->ctx);
  free(ws);
}

static int map_err(int rc) {
  switch (rc) {
  case 0: return 0;
  case WSLAY_ERR_NOMEM: return SF_ENOMEM;
  case WSLAY_ERR_NO_MORE_MSG: return SF_ESTATE;
  default: return SF_EIO;
  }
}

/* Writes whatever wslay has queued. */
static int flush(qry_ws_t *ws) {
  int rc = wslay_event_send(ws->ctx);
  if (rc != 0 || ws->write_failed)
    return rc == WSLAY_ERR_NOMEM ? SF_ENOMEM : SF_EIO;
  return 0;
}

static int queue_and_flush(qry_ws_t *ws, uint8_t opcode, const void *data,
                           size_t len) {
  if (ws->write_failed)
    return SF_EIO;
  struct wslay_event_msg m = {opcode, data, len};
  int rc = map_err(wslay_event_queue_msg(ws->ctx, &m));
  return rc ? rc : flush(ws);
}

int qry_ws_send_text(qry_ws_t *ws, const char *data, size_t len) {
  return queue_and_flush(ws, WSLAY_TEXT_FRAME, data, len);
}

int qry_ws_send_ping(qry_ws_t *ws) {
  return queue_and_flush(ws, WSLAY_PING, "hb", 2);
}

int qry_ws_send_close(qry_ws_t *ws, uint16_t code, const char *reason) {
  if (ws->write_failed)
    return SF_EIO;
  size_t rlen = reason ? strlen(reason) : 0;
  if (rlen > 120)
    rlen = 120;
  int rc = map_err(wslay_event_queue_close(ws->ctx, code,
                                           (const uint8_t *)reason, rlen));
  return rc ? rc : flush(ws);
}

int qry_ws_feed(qry_ws_t *ws, const char *data, size_t len) {
  if (ws->write_failed)
    return SF_EIO;
  ws->in = (const uint8_t *)data;
  ws->in_len = len;
  int rc = wslay_event_recv(ws->ctx);
  ws->in = NULL;
  ws->in_len = 0;
  if (rc != 0)
    return rc == WSLAY_ERR_NOMEM ? SF_ENOMEM : SF_EIO;
  /* Pongs, or the close reply wslay queued on its own. */
  if ((rc = flush(ws)) != 0)
    return rc;
  if (ws->text_failed || wslay_event_get_close_received(ws->ctx) ||
      !wslay_event_get_read_enabled(ws->ctx))
    return QRY_WS_CLOSED;
  return QRY_WS_OPEN;
}
