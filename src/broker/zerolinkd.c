/* SPDX-License-Identifier: MIT */
#include "broker.h"

int main(int argc, char **argv)
{
	return zl_broker_main(argc, argv);
}
