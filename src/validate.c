/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Argument checks shared by the SQL functions.
 *
 * The SQL functions are declared without STRICT so that a NULL where a value
 * is required is an error (22004) rather than a silent NULL result.  Each
 * helper reads one argument, checks it against the documented limits and
 * raises the documented SQLSTATE: 22004 for NULL, 22023 for a value outside
 * the domain, 54000 for a value over a size limit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/int.h"
#include "datatype/timestamp.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "eventsource.h"

/* A required argument: 22004 when it is null. */
void
es_arg_not_null(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

/*
 * A stream id: not null, not empty, at most ES_MAX_STREAM_ID_LEN bytes.
 */
text *
es_arg_stream_id(FunctionCallInfo fcinfo, int argno)
{
	text	   *id;
	int			len;

	es_arg_not_null(fcinfo, argno, "stream_id");
	id = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(id);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream_id must not be empty")));
	if (len > ES_MAX_STREAM_ID_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stream_id is too long"),
				 errdetail("It is %d bytes; the limit is %d bytes.",
						   len, ES_MAX_STREAM_ID_LEN)));
	return id;
}

/*
 * A name (checkpoint, subscription, option): not null, not empty, at most
 * "maxlen" bytes.  Returned as a palloc'd C string.
 */
char *
es_arg_name(FunctionCallInfo fcinfo, int argno, const char *what, int maxlen)
{
	text	   *t;
	int			len;

	es_arg_not_null(fcinfo, argno, what);
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is too long", what),
				 errdetail("It is %d bytes; the limit is %d bytes.", len, maxlen)));
	return text_to_cstring(t);
}

/*
 * An interval in microseconds, months counted as 30 days (as interval
 * comparisons do).  False when it does not fit in 64 bits.
 */
bool
es_interval_us(const Interval *iv, int64 *us)
{
	int64		days_us;

	return !pg_mul_s64_overflow((int64) iv->day + (int64) iv->month * DAYS_PER_MONTH,
								USECS_PER_DAY, &days_us) &&
		!pg_add_s64_overflow(days_us, iv->time, us);
}

int64
es_arg_int64(FunctionCallInfo fcinfo, int argno, const char *what)
{
	es_arg_not_null(fcinfo, argno, what);
	return PG_GETARG_INT64(argno);
}

int32
es_arg_int32(FunctionCallInfo fcinfo, int argno, const char *what)
{
	es_arg_not_null(fcinfo, argno, what);
	return PG_GETARG_INT32(argno);
}

/*
 * A filter array (event types, categories): one dimension, no NULL
 * elements, at most ES_MAX_FILTER_ELEMENTS.  An empty array is allowed and
 * matches nothing.  (Matching is by hash, not per element: see read.c.)
 */
void
es_check_text_array(ArrayType *arr, const char *what)
{
	int			n;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", what)));
	n = ArrayGetNItems(ARR_NDIM(arr), ARR_DIMS(arr));
	if (n > ES_MAX_FILTER_ELEMENTS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s has too many elements", what),
				 errdetail("It has %d; the limit is %d.", n, ES_MAX_FILTER_ELEMENTS)));
	if (array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not contain null elements", what)));
}

/*
 * A function that writes: refused in a read-only transaction (25006) and
 * in parallel mode.
 */
void
es_require_writable(const char *function)
{
	PreventCommandIfReadOnly(function);
	PreventCommandIfParallelMode(function);
}
