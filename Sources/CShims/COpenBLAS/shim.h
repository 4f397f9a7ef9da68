// OpenBLAS through its CBLAS interface (Debian: libopenblas-dev).
#ifndef SDFLOW_COPENBLAS_SHIM_H
#define SDFLOW_COPENBLAS_SHIM_H
#include <cblas.h>

// OpenBLAS extensions; declared here too in case <cblas.h> is the reference CBLAS header.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_corename(void);
#endif
