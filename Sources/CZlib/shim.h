#ifndef STANDIN_ZLIB_SHIM_H
#define STANDIN_ZLIB_SHIM_H
#include <zlib.h>

// deflateInit/inflateInit are macros (they pass ZLIB_VERSION and sizeof(z_stream)); wrap them for Swift.
static inline int StandIn_deflateInit(z_streamp strm, int level) {
    return deflateInit(strm, level);
}
static inline int StandIn_inflateInit(z_streamp strm) {
    return inflateInit(strm);
}
#endif
