/* err: messages, names and retriability generated from SF_ERR_MAP. */
#include "sf/err.h"

const char *sf_strerror(int code) {
  switch (code) {
  case SF_OK:
    return "success";
#define SF__ERR_MSG(name, value, retriable, msg) \
  case SF_E##name:                               \
    return msg;
    SF_ERR_MAP(SF__ERR_MSG)
#undef SF__ERR_MSG
  default:
    return "unknown error";
  }
}

const char *sf_err_name(int code) {
  switch (code) {
  case SF_OK:
    return "SF_OK";
#define SF__ERR_NAME(name, value, retriable, msg) \
  case SF_E##name:                                \
    return "SF_E" #name;
    SF_ERR_MAP(SF__ERR_NAME)
#undef SF__ERR_NAME
  default:
    return "SF_EUNKNOWN";
  }
}

bool sf_err_is_retriable(int code) {
  switch (code) {
#define SF__ERR_RETRY(name, value, retriable, msg) \
  case SF_E##name:                                 \
    return retriable;
    SF_ERR_MAP(SF__ERR_RETRY)
#undef SF__ERR_RETRY
  default:
    return false;
  }
}
