/*
 * A native PostgreSQL relay, for the benchmarks only (issue 18, item 3): how much of the
 * gateway's per-transaction and per-session cost is Node's stream and TLS machinery, measured
 * by moving the same bytes in C.
 *
 * JavaScript accepts a connection and reads its SSLRequest; adopt(fd) dups the descriptor and
 * hands it to one native thread, which answers 'S', runs the TLS handshake with OpenSSL (the
 * copy inside the node binary, whose symbols an addon can use), connects to the target in
 * plaintext and relays both ways on epoll. It keeps what the gateway's relay is for, in the
 * same places: both directions are framed at message boundaries (a teardown can wait for one),
 * the client's simple-query statements are captured and handed to JavaScript in one batch per
 * loop turn (the statement audit), bytes are counted each way, and a full socket stops reading
 * the other side (backpressure). It does no login: the client authenticates with the target
 * through it, as through bench/lib/bare-tls-pipe.mjs.
 *
 * Built by bench/lib/native-addon.mjs with the system compiler against Node's headers.
 */
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <node_api.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384
#define STATEMENT_MAX 1024

/* Message framing: how far into the current message a direction is, so the relay knows
 * where boundaries are and can read a message's type and first bytes. */
typedef struct framer {
  int startup;        /* the next message has no type byte (the client's StartupMessage) */
  uint8_t head[5];    /* type and length of the message being read */
  int head_len;
  uint32_t left;      /* body bytes of the current message still to come */
  int capture;        /* the current message is a Query whose text is captured */
  char text[STATEMENT_MAX];
  uint32_t text_len;
  uint64_t messages;
} framer;

struct conn;
typedef struct side { struct conn *c; int is_client; uint32_t events; } side;

typedef struct conn {
  int cfd, tfd;
  SSL *ssl;
  int handshaking, handshake_wants_write, target_connected;
  uint8_t *to_target; size_t tt_len, tt_off;   /* plaintext the target has not taken yet */
  uint8_t *to_client; size_t tc_len;           /* plaintext SSL_write has not taken yet */
  int ssl_write_wants_read, ssl_read_wants_write;
  framer up, down;
  uint64_t bytes_up, bytes_down;
  side cs, ts;
  struct conn *prev, *next;   /* every live session, for closeAll() */
} conn;

typedef struct batch { size_t len; char data[]; } batch;

static SSL_CTX *ctx;
static int epfd = -1, evfd = -1;
static struct sockaddr_in target;
static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int *queue; static size_t queue_len, queue_cap;
static napi_threadsafe_function on_statements;
static uint8_t readbuf[BUF];
/* Statements captured in this loop turn, "\0"-separated, handed to JS in one call. */
static char *pending; static size_t pending_len, pending_cap;
static uint64_t live, closed_total;
static conn *conns;
/* Statements wait for at most STATEMENT_DELAY_NS (or STATEMENT_BATCH bytes) before they go to
 * JS in one call: a call per loop turn woke the JS thread about once per transaction. */
#define STATEMENT_DELAY_NS 2000000LL
#define STATEMENT_BATCH 32768
static long long pending_since;
/* closeAll(): the goodbye each session gets before its close, set by the JS thread. */
static uint8_t *goodbye; static size_t goodbye_len; static int close_all_requested;

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void queue_statement(const char *s, size_t n) {
  if (pending_len == 0) pending_since = now_ns();
  if (pending_len + n + 1 > pending_cap) {
    pending_cap = (pending_len + n + 1) * 2;
    pending = realloc(pending, pending_cap);
  }
  memcpy(pending + pending_len, s, n);
  pending_len += n;
  pending[pending_len++] = 0;
}

/* Returns -1 on a length below 4 (the gateway's Framer ends the session on one), else 0. */
static int frame(framer *f, const uint8_t *p, size_t n, int capture_queries) {
  while (n > 0) {
    if (f->left == 0 && f->head_len < (f->startup ? 4 : 5)) {
      int want = (f->startup ? 4 : 5) - f->head_len;
      int take = (size_t)want < n ? want : (int)n;
      memcpy(f->head + f->head_len, p, take);
      f->head_len += take; p += take; n -= take;
      if (f->head_len < (f->startup ? 4 : 5)) return 0;
      const uint8_t *l = f->startup ? f->head : f->head + 1;
      uint32_t len = (uint32_t)l[0] << 24 | (uint32_t)l[1] << 16 | (uint32_t)l[2] << 8 | l[3];
      if (len < 4) return -1;
      f->left = len - 4;
      f->capture = capture_queries && !f->startup && f->head[0] == 'Q';
      f->text_len = 0;
      if (f->left == 0) { f->head_len = 0; f->startup = 0; f->messages++; }
      continue;
    }
    size_t take = f->left < n ? f->left : n;
    if (f->capture && f->text_len < STATEMENT_MAX) {
      size_t room = STATEMENT_MAX - f->text_len, c = take < room ? take : room;
      memcpy(f->text + f->text_len, p, c);
      f->text_len += c;
    }
    p += take; n -= take; f->left -= take;
    if (f->left == 0) {
      if (f->capture) {
        /* The SQL ends at its first NUL, as readCString reads it in the gateway's relay (and a
         * NUL inside would split it in two in the "\0"-separated batch). */
        const char *end = memchr(f->text, 0, f->text_len);
        queue_statement(f->text, end ? (size_t)(end - f->text) : f->text_len);
      }
      f->head_len = 0; f->startup = 0; f->messages++;
    }
  }
  return 0;
}

static void set_events(side *s, int fd, uint32_t events) {
  if (s->events == events) return;
  struct epoll_event ev = { .events = events, .data.ptr = s };
  epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
  s->events = events;
}

/* Target legs of a mass teardown, closed TARGET_GRACE_NS after their clients: a thousand
 * backends exiting at once would take the CPU from the goodbyes (the gateway's relay waits
 * the same 250 ms before its target-leg Terminate). */
#define TARGET_GRACE_NS 250000000LL
static int *late_fds; static size_t late_len, late_cap; static long long late_at;

static void close_conn_later(conn *c, int target_later) {
  if (c->prev) c->prev->next = c->next; else conns = c->next;
  if (c->next) c->next->prev = c->prev;
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->cfd, NULL);
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->tfd, NULL);
  SSL_free(c->ssl);
  close(c->cfd);
  if (target_later) {
    if (late_len == late_cap) { late_cap = late_cap ? late_cap * 2 : 64; late_fds = realloc(late_fds, late_cap * sizeof *late_fds); }
    late_fds[late_len++] = c->tfd;
  } else close(c->tfd);
  free(c->to_target);
  free(c->to_client);
  free(c);
  live--; closed_total++;
  /* Whatever failed on this session (an unexpected EOF, a bad record, a write to a reset socket)
   * left its entries on this thread's OpenSSL error queue, and SSL_get_error() reports
   * SSL_ERROR_SSL for every later call while the queue is not empty: the next session to meet a
   * full socket (WANT_WRITE) or a split record (WANT_READ) would be closed for it. Every SSL error
   * ends in a close, so clearing here keeps the queue empty without a call per event. */
  ERR_clear_error();
}

static void close_conn(conn *c) { close_conn_later(c, 0); }

/* Interest in each descriptor follows from what is pending: a side is read only while the
 * other has taken everything sent to it so far. */
static void update(conn *c) {
  uint32_t ce = 0, te = 0;
  if (c->handshaking) ce = c->handshake_wants_write ? EPOLLOUT : EPOLLIN;
  else {
    /* Not before the target leg is up: pump_up() could not read, and a level-triggered EPOLLIN
     * (data, or the client's EOF) would spin the loop until the connect finished. */
    if (c->target_connected && c->tt_len == 0 && !c->ssl_read_wants_write) ce |= EPOLLIN;
    if (c->tc_len > 0 && !c->ssl_write_wants_read) ce |= EPOLLOUT;
    if (c->tc_len > 0 && c->ssl_write_wants_read) ce |= EPOLLIN;
    if (c->ssl_read_wants_write) ce |= EPOLLOUT;
  }
  if (!c->target_connected) te = EPOLLOUT;
  else {
    if (c->tc_len == 0 && !c->handshaking) te |= EPOLLIN;
    if (c->tt_len > 0) te |= EPOLLOUT;
  }
  set_events(&c->cs, c->cfd, ce);
  set_events(&c->ts, c->tfd, te);
}

/* Sends what is pending for the target; 0 when all of it went, 1 when some waits, -1 on error. */
static int flush_target(conn *c) {
  while (c->tt_off < c->tt_len) {
    ssize_t w = write(c->tfd, c->to_target + c->tt_off, c->tt_len - c->tt_off);
    if (w < 0) return errno == EAGAIN || errno == EINTR ? 1 : -1;
    c->tt_off += w;
  }
  c->tt_len = c->tt_off = 0;
  free(c->to_target);
  c->to_target = NULL;
  return 0;
}

static int flush_client(conn *c) {
  c->ssl_write_wants_read = 0;
  while (c->tc_len > 0) {
    int w = SSL_write(c->ssl, c->to_client, (int)c->tc_len);
    if (w <= 0) {
      int e = SSL_get_error(c->ssl, w);
      if (e == SSL_ERROR_WANT_WRITE) return 1;
      if (e == SSL_ERROR_WANT_READ) { c->ssl_write_wants_read = 1; return 1; }
      return -1;
    }
    memmove(c->to_client, c->to_client + w, c->tc_len - w);
    c->tc_len -= w;
  }
  free(c->to_client);
  c->to_client = NULL;
  return 0;
}

/* Client to target: everything OpenSSL can decrypt now, until the target's socket is full. */
static int pump_up(conn *c) {
  if (!c->target_connected) return 0;
  c->ssl_read_wants_write = 0;
  while (c->tt_len == 0) {
    int r = SSL_read(c->ssl, readbuf, BUF);
    if (r <= 0) {
      int e = SSL_get_error(c->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return 0;
      if (e == SSL_ERROR_WANT_WRITE) { c->ssl_read_wants_write = 1; return 0; }
      return -1;
    }
    if (frame(&c->up, readbuf, r, 1) < 0) return -1;
    c->bytes_up += r;
    ssize_t w = write(c->tfd, readbuf, r);
    if (w < 0 && errno != EAGAIN && errno != EINTR) return -1;
    if (w < 0) w = 0;
    if (w < r) {
      c->to_target = realloc(c->to_target, r - w);
      memcpy(c->to_target, readbuf + w, r - w);
      c->tt_len = r - w; c->tt_off = 0;
    }
    /* Level-triggered: what is still in the socket wakes the loop again, so only what OpenSSL
     * already holds is read now (no read() that would find nothing). */
    if (!SSL_has_pending(c->ssl)) break;
  }
  return 0;
}

/* Target to client: one read per readiness, encrypted straight away (one record per read). */
static int pump_down(conn *c) {
  while (c->tc_len == 0) {
    ssize_t r = read(c->tfd, readbuf, BUF);
    if (r == 0) return -1;
    if (r < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    if (frame(&c->down, readbuf, r, 0) < 0) return -1;
    c->bytes_down += r;
    int w = SSL_write(c->ssl, readbuf, (int)r);
    if (w == r) { if (r < BUF) return 0; continue; }
    int e = w <= 0 ? SSL_get_error(c->ssl, w) : SSL_ERROR_WANT_WRITE;
    if (w < 0) w = 0;
    if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) return -1;
    c->to_client = realloc(c->to_client, r - w);
    memcpy(c->to_client, readbuf + w, r - w);
    c->tc_len = r - w;
    c->ssl_write_wants_read = e == SSL_ERROR_WANT_READ;
  }
  return 0;
}

static int on_client(conn *c, uint32_t ev) {
  if (ev & EPOLLERR) return -1;
  if ((ev & EPOLLHUP) && (c->tt_len > 0 || (!c->handshaking && !c->target_connected))) return -1;
  if (c->handshaking) {
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
      c->handshaking = 0;
      /* With read-ahead the client's first records can already sit in OpenSSL (they came with
       * its Finished). If the handshake ended on a write (EPOLLOUT: say TLS 1.3 session tickets
       * that waited for room), nothing below would read them and the socket would not wake us. */
      if (SSL_has_pending(c->ssl)) ev |= EPOLLIN;
    } else {
      int e = SSL_get_error(c->ssl, r);
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return -1;
      c->handshake_wants_write = e == SSL_ERROR_WANT_WRITE;
      return 0;
    }
  }
  if ((ev & EPOLLOUT) || c->ssl_write_wants_read) {
    if (flush_client(c) < 0) return -1;
    if (c->tc_len == 0 && pump_down(c) < 0) return -1;
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    if (pump_up(c) < 0) return -1;
  }
  if (c->ssl_read_wants_write && (ev & EPOLLOUT)) return pump_up(c);
  return 0;
}

static int on_target(conn *c, uint32_t ev) {
  if (!c->target_connected) {
    int err = 0; socklen_t l = sizeof err;
    getsockopt(c->tfd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) return -1;
    c->target_connected = 1;
    return c->handshaking ? 0 : pump_up(c);
  }
  if (ev & EPOLLOUT) {
    int f = flush_target(c);
    if (f < 0) return -1;
    if (f == 0 && pump_up(c) < 0) return -1;
  }
  if (ev & EPOLLERR) return -1;
  if ((ev & EPOLLHUP) && c->tc_len > 0) return -1;
  if (ev & (EPOLLIN | EPOLLHUP)) return pump_down(c);
  return 0;
}

static void adopt_now(int fd) {
  conn *c = calloc(1, sizeof *c);
  c->cfd = fd;
  c->up.startup = 1;
  c->handshaking = 1;
  c->cs = (side){ c, 1, EPOLLIN };
  c->ts = (side){ c, 0, EPOLLOUT };
  int one = 1;
  if (write(fd, "S", 1) != 1) { close(fd); free(c); return; }
  c->tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  setsockopt(c->tfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(c->tfd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) { close(c->tfd); close(fd); free(c); return; }
  c->ssl = SSL_new(ctx);
  SSL_set_fd(c->ssl, fd);
  SSL_set_accept_state(c->ssl);
  struct epoll_event ce = { .events = EPOLLIN, .data.ptr = &c->cs }, te = { .events = EPOLLOUT, .data.ptr = &c->ts };
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ce);
  epoll_ctl(epfd, EPOLL_CTL_ADD, c->tfd, &te);
  c->next = conns;
  if (conns) conns->prev = c;
  conns = c;
  live++;
}

/* The mass teardown: every session gets the goodbye (when its TLS is up and nothing else is
 * half-written to it), a close_notify, and its sockets closed; the target sees its socket close. */
static void close_everything(const uint8_t *bye, size_t bye_len) {
  while (conns) {
    conn *c = conns;
    /* Not in the middle of one of the target's messages: the goodbye would land inside it. */
    int at_boundary = c->down.head_len == 0 && c->down.left == 0;
    if (!c->handshaking && c->tc_len == 0 && at_boundary && bye_len > 0) {
      SSL_write(c->ssl, bye, (int)bye_len);
      SSL_shutdown(c->ssl);
    }
    close_conn_later(c, 1);
  }
  late_at = now_ns() + TARGET_GRACE_NS;
}

static void *loop(void *arg) {
  (void)arg;
  struct epoll_event evs[128];
  for (;;) {
    long long wake = pending_len > 0 ? pending_since + STATEMENT_DELAY_NS : 0;
    if (late_len > 0 && (wake == 0 || late_at < wake)) wake = late_at;
    int timeout = -1;
    if (wake != 0) {
      long long left = wake - now_ns();
      timeout = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
    }
    int n = epoll_wait(epfd, evs, 128, timeout);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        uint64_t v;
        if (read(evfd, &v, sizeof v) < 0) continue;
        pthread_mutex_lock(&lock);
        int *q = queue; size_t len = queue_len;
        queue = NULL; queue_len = queue_cap = 0;
        int close_all_now = close_all_requested;
        close_all_requested = 0;
        /* The goodbye is taken, not read in place: a second closeAll() frees the global one. */
        uint8_t *bye = NULL; size_t bye_len = 0;
        if (close_all_now) { bye = goodbye; bye_len = goodbye_len; goodbye = NULL; goodbye_len = 0; }
        pthread_mutex_unlock(&lock);
        for (size_t j = 0; j < len; j++) adopt_now(q[j]);
        free(q);
        if (close_all_now) {
          close_everything(bye, bye_len);
          free(bye);
          for (int j = i + 1; j < n; j++) evs[j].data.ptr = (void *)1;
        }
        continue;
      }
      if (evs[i].data.ptr == (void *)1) continue;
      side *s = evs[i].data.ptr;
      conn *c = s->c;
      if ((s->is_client ? on_client(c, evs[i].events) : on_target(c, evs[i].events)) < 0) {
        /* A conn can appear twice in one batch (both sides ready): mark the other side's
         * event as gone before freeing. */
        for (int j = i + 1; j < n; j++)
          if (evs[j].data.ptr == &c->cs || evs[j].data.ptr == &c->ts) evs[j].data.ptr = (void *)1;
        close_conn(c);
      } else update(c);
    }
    if (late_len > 0 && now_ns() >= late_at) {
      for (size_t j = 0; j < late_len; j++) close(late_fds[j]);
      late_len = 0;
    }
    if (pending_len > 0 && (pending_len >= STATEMENT_BATCH || now_ns() - pending_since >= STATEMENT_DELAY_NS)) {
      batch *b = malloc(sizeof *b + pending_len);
      b->len = pending_len;
      memcpy(b->data, pending, pending_len);
      pending_len = 0;
      if (napi_call_threadsafe_function(on_statements, b, napi_tsfn_nonblocking) != napi_ok) free(b);
    }
  }
  return NULL;
}

/* The statements of one batch reach JS as an array of strings. */
static void deliver(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  batch *b = data;
  if (env != NULL) {
    napi_value arr, s;
    napi_create_array(env, &arr);
    size_t off = 0; uint32_t k = 0;
    while (off < b->len) {
      size_t len = strlen(b->data + off);
      napi_create_string_utf8(env, b->data + off, len, &s);
      napi_set_element(env, arr, k++, s);
      off += len + 1;
    }
    napi_value undef;
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, cb, 1, &arr, NULL);
  }
  free(b);
}

static napi_value throw_msg(napi_env env, const char *m) { napi_throw_error(env, NULL, m); return NULL; }

static char *get_string(napi_env env, napi_value v) {
  size_t n;
  napi_get_value_string_utf8(env, v, NULL, 0, &n);
  char *s = malloc(n + 1);
  napi_get_value_string_utf8(env, v, s, n + 1, &n);
  return s;
}

/* start({ certPem, keyPem, tls13, tls12, targetHost, targetPort }, onStatements) */
static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || ctx != NULL) return throw_msg(env, "start(options, onStatements), once");
  napi_value v;
  char *cert, *key, *tls13, *tls12, *host; int32_t port;
  napi_get_named_property(env, argv[0], "certPem", &v); cert = get_string(env, v);
  napi_get_named_property(env, argv[0], "keyPem", &v); key = get_string(env, v);
  napi_get_named_property(env, argv[0], "tls13", &v); tls13 = get_string(env, v);
  napi_get_named_property(env, argv[0], "tls12", &v); tls12 = get_string(env, v);
  napi_get_named_property(env, argv[0], "targetHost", &v); host = get_string(env, v);
  napi_get_named_property(env, argv[0], "targetPort", &v); napi_get_value_int32(env, v, &port);

  ctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  int ok = SSL_CTX_set_ciphersuites(ctx, tls13) == 1 && SSL_CTX_set_cipher_list(ctx, tls12) == 1;
  BIO *bio = BIO_new_mem_buf(cert, -1);
  X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  ok = ok && x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;
  X509 *extra;
  while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) SSL_CTX_add_extra_chain_cert(ctx, extra);
  ERR_clear_error();
  BIO_free(bio);
  X509_free(x);
  bio = BIO_new_mem_buf(key, -1);
  EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
  ok = ok && pk != NULL && SSL_CTX_use_PrivateKey(ctx, pk) == 1;
  EVP_PKEY_free(pk);
  BIO_free(bio);
  target.sin_family = AF_INET;
  target.sin_port = htons((uint16_t)port);
  ok = ok && inet_pton(AF_INET, host, &target.sin_addr) == 1;
  free(cert); free(key); free(tls13); free(tls12); free(host);
  if (!ok) return throw_msg(env, "native relay: bad certificate, key, cipher list or target address");

  napi_value name;
  napi_create_string_utf8(env, "statements", NAPI_AUTO_LENGTH, &name);
  napi_create_threadsafe_function(env, argv[1], NULL, name, 0, 1, NULL, NULL, NULL, deliver, &on_statements);
  napi_unref_threadsafe_function(env, on_statements);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &ev);
  pthread_create(&thread, NULL, loop, NULL);
  pthread_detach(thread);
  return NULL;
}

/* adopt(fd): the relay takes its own copy of the descriptor; the caller closes its own. */
static napi_value adopt(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1]; int32_t fd;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || epfd < 0) return throw_msg(env, "adopt(fd) after start()");
  int mine = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (mine < 0) return throw_msg(env, "adopt: dup failed");
  pthread_mutex_lock(&lock);
  if (queue_len == queue_cap) { queue_cap = queue_cap ? queue_cap * 2 : 16; queue = realloc(queue, queue_cap * sizeof *queue); }
  queue[queue_len++] = mine;
  pthread_mutex_unlock(&lock);
  uint64_t one = 1;
  if (write(evfd, &one, sizeof one) < 0) return throw_msg(env, "adopt: eventfd write failed");
  return NULL;
}

/* closeAll(goodbye): the loop sends the goodbye to every session and closes them all. */
static napi_value close_all(napi_env env, napi_callback_info info) {
  size_t argc = 1; napi_value argv[1]; void *data; size_t len;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok || epfd < 0) return throw_msg(env, "closeAll(buffer) after start()");
  pthread_mutex_lock(&lock);
  free(goodbye);
  goodbye = malloc(len);
  memcpy(goodbye, data, len);
  goodbye_len = len;
  close_all_requested = 1;
  pthread_mutex_unlock(&lock);
  uint64_t one = 1;
  if (write(evfd, &one, sizeof one) < 0) return throw_msg(env, "closeAll: eventfd write failed");
  return NULL;
}

/* stats(): { live, closed } sessions (read without the loop's lock: figures for a benchmark). */
static napi_value stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_double(env, (double)live, &v); napi_set_named_property(env, o, "live", v);
  napi_create_double(env, (double)closed_total, &v); napi_set_named_property(env, o, "closed", v);
  return o;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "start", NULL, start, NULL, NULL, NULL, napi_default, NULL },
    { "adopt", NULL, adopt, NULL, NULL, NULL, napi_default, NULL },
    { "stats", NULL, stats, NULL, NULL, NULL, napi_default, NULL },
    { "closeAll", NULL, close_all, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, 4, props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
