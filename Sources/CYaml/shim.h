#ifndef PROXYD_CYAML_SHIM_H
#define PROXYD_CYAML_SHIM_H
#include <yaml.h>
#endif
