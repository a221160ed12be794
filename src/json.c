/*-------------------------------------------------------------------------
 *
 * json.c
 *	  The one way the C code builds JSON: an object or array written into a
 *	  StringInfo, member by member, with escape_json() for every string.
 *
 * Used for the jsonb results of the monitoring functions (status.c), the
 * payloads of notifications (bookkeeping.c), the last_shutdown record
 * (worker.c) and the data of the lifecycle system events (lifecycle.c,
 * erasure.c).  A value built here is plain JSON text; es_json_jsonb() turns
 * it into jsonb, which orders the keys by its own rule, so the order of the
 * calls only matters for text that is kept as text (a notification
 * payload).
 *
 * Timestamps are written as jsonb_build_object writes a timestamptz
 * (JsonEncodeDateTime, ISO 8601 with the offset); 0 means "none" and is
 * written as null.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "eventsource.h"

static void
json_open(EsJson *j, char open, char close)
{
	initStringInfo(&j->buf);
	appendStringInfoChar(&j->buf, open);
	j->close = close;
	j->empty = true;
}

/* Start an empty object. */
void
es_json_object(EsJson *j)
{
	json_open(j, '{', '}');
}

/* Start an empty array. */
void
es_json_array(EsJson *j)
{
	json_open(j, '[', ']');
}

/*
 * The separator and, in an object, the key of the next member.  "key" is
 * NULL for an element of an array.
 */
static void
json_member(EsJson *j, const char *key)
{
	Assert(j->close != '\0');	/* not finished yet */
	Assert((key != NULL) == (j->close == '}'));
	if (!j->empty)
		appendStringInfoString(&j->buf, ", ");
	j->empty = false;
	if (key != NULL)
	{
		escape_json(&j->buf, key);
		appendStringInfoString(&j->buf, ": ");
	}
}

/* A string member; NULL writes null. */
void
es_json_string(EsJson *j, const char *key, const char *value)
{
	json_member(j, key);
	if (value)
		escape_json(&j->buf, value);
	else
		appendStringInfoString(&j->buf, "null");
}

void
es_json_int(EsJson *j, const char *key, int64 value)
{
	json_member(j, key);
	appendStringInfo(&j->buf, INT64_FORMAT, value);
}

void
es_json_bool(EsJson *j, const char *key, bool value)
{
	json_member(j, key);
	appendStringInfoString(&j->buf, value ? "true" : "false");
}

/*
 * A timestamp member, as jsonb writes a timestamptz.  Any value, also 0
 * (2000-01-01 00:00 UTC) and earlier: for times read from a table.
 */
void
es_json_timestamp(EsJson *j, const char *key, TimestampTz t)
{
	char		iso[MAXDATELEN + 1];

	es_json_string(j, key,
				   JsonEncodeDateTime(iso, TimestampTzGetDatum(t), TIMESTAMPTZOID, NULL));
}

/* A timestamp member where 0 means "none" and writes null. */
void
es_json_time(EsJson *j, const char *key, TimestampTz t)
{
	if (t == 0)
		es_json_string(j, key, NULL);
	else
		es_json_timestamp(j, key, t);
}

/* A finished object or array ("value", see es_json_finish) as a member. */
void
es_json_nested(EsJson *j, const char *key, EsJson *value)
{
	json_member(j, key);
	appendStringInfoString(&j->buf, es_json_finish(value));
}

/*
 * Close the object or array and return its text (palloc'd in the context
 * that was current when it was started).  Calling it again returns the
 * same text.
 */
char *
es_json_finish(EsJson *j)
{
	if (j->close != '\0')
	{
		appendStringInfoChar(&j->buf, j->close);
		j->close = '\0';
	}
	return j->buf.data;
}

/* Close it and return it as a jsonb Datum. */
Datum
es_json_jsonb(EsJson *j)
{
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(es_json_finish(j)));
}
