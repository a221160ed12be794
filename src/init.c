/*-------------------------------------------------------------------------
 *
 * init.c
 *	  Module entry point: wires the pieces together and nothing else.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "eventsource.h"
#include "subscription.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Settings exist in every backend that loads the library.  Shared memory
 * (the horizon) and the hooks exist only when the library is in
 * shared_preload_libraries; without it the functions that need them raise
 * 55000 (es_require_shmem).
 */
void
_PG_init(void)
{
	es_define_gucs(process_shared_preload_libraries_in_progress);

	if (!process_shared_preload_libraries_in_progress)
		return;

	es_shmem_install_hooks();
	es_utility_install_hook();
	es_launcher_register();
}
