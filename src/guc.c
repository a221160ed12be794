/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The eventsource.* configuration settings.
 *
 * All settings are defined here, with their defaults and ranges, so that
 * the README's settings table has one source.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "eventsource.h"

int			es_snapshots_to_keep = 1;
int			es_max_databases = 64;

/*
 * Define the settings.  PGC_POSTMASTER ones can only be defined while the
 * library is being preloaded (elsewhere it is a FATAL error), and only then
 * do they mean anything.
 */
void
es_define_gucs(bool preloading)
{
	DefineCustomIntVariable("eventsource.snapshots_to_keep",
							"Number of snapshots kept per stream and schema version.",
							"save_snapshot() deletes older ones beyond this number.",
							&es_snapshots_to_keep,
							1, 1, 1000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	if (!preloading)
	{
		MarkGUCPrefixReserved("eventsource");
		return;
	}

	DefineCustomIntVariable("eventsource.max_databases",
							"Number of databases that can use the event store at the same time.",
							"Each needs a small entry in shared memory for its safe horizon.",
							&es_max_databases,
							64, 1, 10000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("eventsource");
}
