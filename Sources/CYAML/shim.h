#ifndef KV_CYAML_SHIM_H
#define KV_CYAML_SHIM_H
#include <yaml.h>
#endif
