/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  What a stream id means: its category, its partition, its lock hash
 *	  (which covers the tenant too).
 *
 * The category of a stream is the part of its id before the first '-'
 * ("Order-1f3e" -> "Order"), or the whole id when it has none
 * (es_stream_category; in SQL, schema.h's ES_SQL_CATEGORY).
 *
 * stream_partition(stream_id, n) is the documented, stable hash that
 * partitioned subscriptions use to split streams between workers:
 *
 *		FNV-1a, 64 bits, over the bytes of stream_id (UTF-8 in a UTF-8
 *		database), taken modulo n.
 *
 * Any client can compute it (the README shows it in Python), and it never
 * changes between releases: changing it would move streams between
 * partitions and break per-stream order across an upgrade.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "eventsource.h"

#define FNV1A_64_OFFSET		UINT64CONST(14695981039346656037)
#define FNV1A_64_PRIME		UINT64CONST(1099511628211)
#define ES_MAX_PARTITIONS	1024

uint64
es_hash_stream_id(const char *data, int len)
{
	uint64		h = FNV1A_64_OFFSET;

	for (int i = 0; i < len; i++)
	{
		h ^= (unsigned char) data[i];
		h *= FNV1A_64_PRIME;
	}
	return h;
}

/*
 * The hash of the per-stream locks (append.c, es_lock_stream): FNV-1a over
 * the tenant id, a zero byte (never part of a tenant id) and the stream id,
 * so that the same stream id in two tenants takes two different locks.
 * Not the partition hash, which stays a function of the stream id alone.
 */
uint64
es_hash_tenant_stream(text *tenant, text *stream_id)
{
	const char *t = VARDATA_ANY(tenant);
	const char *s = VARDATA_ANY(stream_id);
	int			tlen = VARSIZE_ANY_EXHDR(tenant);
	int			slen = VARSIZE_ANY_EXHDR(stream_id);
	uint64		h = FNV1A_64_OFFSET;

	for (int i = 0; i < tlen; i++)
	{
		h ^= (unsigned char) t[i];
		h *= FNV1A_64_PRIME;
	}
	h *= FNV1A_64_PRIME;		/* the zero byte: h ^= 0 */
	for (int i = 0; i < slen; i++)
	{
		h ^= (unsigned char) s[i];
		h *= FNV1A_64_PRIME;
	}
	return h;
}

int
es_stream_partition(const char *data, int len, int partitions)
{
	return (int) (es_hash_stream_id(data, len) % (uint64) partitions);
}

/*
 * The length of the category of the stream id data[0..len): the bytes
 * before the first '-', or all of them.  schema.h's ES_SQL_CATEGORY is the
 * same rule in SQL.
 */
int
es_stream_category(const char *data, int len)
{
	const char *dash = memchr(data, '-', len);

	return dash ? dash - data : len;
}

PG_FUNCTION_INFO_V1(es_stream_partition_sql);

/* stream_partition(stream_id text, partitions integer) RETURNS integer */
Datum
es_stream_partition_sql(PG_FUNCTION_ARGS)
{
	text	   *id = es_arg_stream_id(fcinfo, 0);
	int32		n = es_arg_int32(fcinfo, 1, "partitions");

	if (n < 1 || n > ES_MAX_PARTITIONS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("partitions must be between 1 and %d", ES_MAX_PARTITIONS)));
	PG_RETURN_INT32(es_stream_partition(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id), n));
}

PG_FUNCTION_INFO_V1(es_category);

/* category(stream_id text) RETURNS text */
Datum
es_category(PG_FUNCTION_ARGS)
{
	text	   *id = es_arg_stream_id(fcinfo, 0);
	const char *data = VARDATA_ANY(id);

	PG_RETURN_TEXT_P(cstring_to_text_with_len(data,
											  es_stream_category(data, VARSIZE_ANY_EXHDR(id))));
}
