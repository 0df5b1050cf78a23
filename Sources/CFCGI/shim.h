#ifndef KV_CFCGI_SHIM_H
#define KV_CFCGI_SHIM_H
#include <fcgiapp.h>
#endif
