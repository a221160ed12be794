/*-------------------------------------------------------------------------
 *
 * schema.h
 *	  The extension's tables as the C code sees them: the column numbers of
 *	  eventsource.events, and the SQL spelling of the facts that queries
 *	  written in C repeat (a stream's category, "the events of subscription
 *	  s, partition p").
 *
 * The column order of eventsource.events is frozen with the 1.0 SQL
 * (eventsource--1.0.sql): clients read it with SELECT *, read_stream() and
 * read_all() return SETOF eventsource.events, and dead_letters copies it.
 * Code that reads a row of the log (a tuple of SELECT * FROM @EVENTS@, see
 * lifecycle.c) names the column with an Anum_es_events_* constant, as
 * PostgreSQL's catalogs do with Anum_pg_*.
 *
 * The SQL fragments are string-literal macros, so that each query stays one
 * literal that SPI prepares once.  Every read of the log still goes through
 * es_visible_plan() (lifecycle.c): the fragments name a row's columns with
 * a prefix ("" for an unqualified column, "e." for an alias) and never the
 * table, which the caller spells @EVENTS@.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_SCHEMA_H
#define ES_SCHEMA_H

/* eventsource.events, in its frozen column order */
#define Anum_es_events_global_position	1
#define Anum_es_events_stream_id		2
#define Anum_es_events_stream_version	3
#define Anum_es_events_event_id			4
#define Anum_es_events_event_type		5
#define Anum_es_events_data				6
#define Anum_es_events_metadata			7
#define Anum_es_events_recorded_at		8
#define Natts_es_events					8

/*
 * The category of a stream: the part of its id before the first '-', or
 * the whole id when it has none.  es_stream_category() (stream.c) is the C
 * spelling of the same rule; eventsource.category() and the streams view
 * (frozen 1.0 SQL) agree with both.
 */
#define ES_SQL_CATEGORY(stream_id) \
	"pg_catalog.split_part(" stream_id ", '-', 1)"

/*
 * How a filter array is searched.  A parameter ($n) goes through a
 * subquery, which the executor hashes (a filter may have
 * ES_MAX_FILTER_ELEMENTS elements); a column of the outer row is searched
 * in place (a correlated subquery would be re-run for every event).
 */
#define ES_SQL_ANY_PARAM(param)		"(SELECT pg_catalog.unnest(" param "))"
#define ES_SQL_ANY_COLUMN(column)	"(" column ")"

/*
 * The event filters of read_all() and of a subscription: event type in
 * "types" and category in "categories" (text[]; NULL: any).  "e" prefixes
 * the event's columns; ANY is ES_SQL_ANY_PARAM or ES_SQL_ANY_COLUMN.
 */
#define ES_SQL_EVENT_FILTER(ANY, e, types, categories) \
	"(" types " IS NULL OR " e "event_type OPERATOR(pg_catalog.=) ANY " ANY(types) ")" \
	" AND (" categories " IS NULL OR " ES_SQL_CATEGORY(e "stream_id") \
	" OPERATOR(pg_catalog.=) ANY " ANY(categories) ")"

/*
 * The event is in partition "partition" of "partitions" (int4): the
 * documented hash of stream.c, eventsource.stream_partition(); one
 * partition takes every event without hashing.
 */
#define ES_SQL_PARTITION_FILTER(e, partitions, partition) \
	"(" partitions " OPERATOR(pg_catalog.=) 1 OR eventsource.stream_partition(" \
	e "stream_id, " partitions ") OPERATOR(pg_catalog.=) " partition ")"

/*
 * The event is in the subscription's tenant "tenant" (text; NULL: a
 * cross-tenant subscription takes every tenant's events).  "tenant_id" is
 * the event's tenant column as the query spells it: @TENANT_ID@ or
 * @TENANT_ID(alias)@ for es_visible_plan() (lifecycle.c), which reads the
 * constant 'default' on the 1.0 SQL.
 */
#define ES_SQL_TENANT_FILTER(tenant_id, tenant) \
	"(" tenant " IS NULL OR " tenant_id " OPERATOR(pg_catalog.=) " tenant ")"

/*
 * The events of subscription s, partition p: what the worker delivers
 * (delivery.c, fetch_events) and what the status view counts as its lag
 * (status.c).  The worker's read of a tenant-scoped subscription also
 * states tenant_id = $n by itself, so that its generic plan reads the
 * tenant's key (tenant_id, global_position).
 */
#define ES_SQL_SUBSCRIPTION_EVENTS(ANY, e, types, categories, partitions, partition, \
								   tenant_id, tenant) \
	ES_SQL_EVENT_FILTER(ANY, e, types, categories) \
	" AND " ES_SQL_PARTITION_FILTER(e, partitions, partition) \
	" AND " ES_SQL_TENANT_FILTER(tenant_id, tenant)

#endif							/* ES_SCHEMA_H */
