/* mock_kafka: librdkafka's built-in mock cluster for the unit tests: one
 * broker, started per test, with the topics a test asks for. Header-only
 * (static inline) so each test executable stays one source file. */
#ifndef SF_TEST_MOCK_KAFKA_H
#define SF_TEST_MOCK_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

typedef struct mock_kafka {
  rd_kafka_t *rk; /* the handle that owns the cluster */
  rd_kafka_mock_cluster_t *mc;
  const char *brokers; /* bootstrap servers, owned by mc */
} mock_kafka_t;

/* Kafka protocol API keys, for rd_kafka_mock_push_request_errors. */
enum {
  MOCK_API_PRODUCE = 0,
  MOCK_API_ADD_PARTITIONS_TO_TXN = 24,
  MOCK_API_END_TXN = 26
};

/* Starts one broker; 0 or -1. */
static inline int mock_kafka_start(mock_kafka_t *m) {
  char errstr[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
  m->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (!m->rk) {
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  m->mc = rd_kafka_mock_cluster_new(m->rk, 1);
  if (!m->mc) {
    rd_kafka_destroy(m->rk);
    return -1;
  }
  m->brokers = rd_kafka_mock_cluster_bootstraps(m->mc);
  return 0;
}

static inline int mock_kafka_topic(mock_kafka_t *m, const char *name,
                                   int partitions) {
  return rd_kafka_mock_topic_create(m->mc, name, partitions, 1) ? -1 : 0;
}

static inline void mock_kafka_stop(mock_kafka_t *m) {
  rd_kafka_mock_cluster_destroy(m->mc);
  rd_kafka_destroy(m->rk);
}

#endif
