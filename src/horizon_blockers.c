/*-------------------------------------------------------------------------
 *
 * horizon_blockers.c
 *	  The rows of the eventsource.horizon_blockers view: the transactions
 *	  whose uncommitted appends hold the safe horizon back.
 *
 * The reservations are horizon.c's; es_horizon_blockers() copies them
 * under the HORIZON LWLock, and the rows are built from the copy after the
 * lock is released.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "eventsource.h"

PG_FUNCTION_INFO_V1(es_horizon_blocker_rows);

/*
 * horizon_blocker_rows() RETURNS SETOF record (pid, dboid, since, positions,
 * min_position, max_position, xid): the transactions of this database whose
 * uncommitted appends hold the safe horizon back.
 */
Datum
es_horizon_blocker_rows(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsReservation *res;
	int			n;

	es_require_shmem("eventsource.horizon_blockers");
	InitMaterializedSRF(fcinfo, 0);
	res = palloc(sizeof(EsReservation) * MaxBackends);
	n = es_horizon_blockers(res);
	for (int i = 0; i < n; i++)
	{
		Datum		v[7];
		bool		nulls[7] = {false, false, false, false, false, false, false};

		v[0] = Int32GetDatum(res[i].pid);
		v[1] = ObjectIdGetDatum(res[i].dboid);
		v[2] = TimestampTzGetDatum(res[i].since);
		v[3] = Int64GetDatum(res[i].count);
		v[4] = Int64GetDatum(res[i].min_position);
		v[5] = Int64GetDatum(res[i].max_position);
		v[6] = TransactionIdGetDatum(res[i].xid);
		nulls[6] = !TransactionIdIsValid(res[i].xid);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, v, nulls);
	}
	return (Datum) 0;
}
