/* opd_data.h — tasks, tokenizer and CSV I/O (data/). */
#ifndef OPD_DATA_H
#define OPD_DATA_H
#include "opd.h"
#endif
