/* tasks.c — placeholder: being written (see the open issues). */
#include "opd.h"
