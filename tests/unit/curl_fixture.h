/* curl_fixture: the cmocka group setup and teardown of the unit tests of
 * modules that use libcurl (sf_registry, sf_upstream, stockflowctl's
 * client). libcurl is set up once per process before such a module is
 * used, as sf_service_run and stockflowctl's main do:
 *   cmocka_run_group_tests(tests, curl_group_setup, curl_group_teardown) */
#ifndef SF_TEST_CURL_FIXTURE_H
#define SF_TEST_CURL_FIXTURE_H

#include <curl/curl.h>

static inline int curl_group_setup(void **state) {
  (void)state;
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static inline int curl_group_teardown(void **state) {
  (void)state;
  curl_global_cleanup();
  return 0;
}

#endif
