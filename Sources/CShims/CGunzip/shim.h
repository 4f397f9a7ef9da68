// zlib (Debian: zlib1g-dev), used to read the gzip-compressed BPE vocabulary.
#include <zlib.h>
