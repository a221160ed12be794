/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The eventsource.* configuration settings.
 *
 * All settings are defined here, with their defaults and ranges, so that
 * the README's settings table has one source; the tracing and span export
 * settings are defined by trace.c and otlp.c (es_trace_define_gucs,
 * es_otlp_define_gucs, called from here), next to the check hooks that
 * parse them.
 *
 * The handler context settings (eventsource.subscription, .event_id,
 * .event_type, .stream_id, .position) are read-only: their show hooks answer
 * from current_event.c, so publishing an event costs nothing per event.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "utils/guc.h"

#include "subscription.h"
#include "trace.h"

#include "eventsource.h"
#include "tenant.h"

int			es_snapshots_to_keep = 1;
int			es_max_databases = 64;
int			es_max_tenant_stats = 10000;
int			es_max_workers = 4;
int			es_drain_timeout_ms_guc = 10000;
int			es_liveness_timeout_ms = 60000;
int			es_max_error_rate_per_minute = 10;
int			es_max_errors_warning = 50;
int			es_max_errors_critical = 200;
int			es_max_lag_events_warning = 5000;
int			es_max_lag_events_critical = 50000;
int			es_lag_count_limit = 250;
int			es_max_dead_letters_warning = 10;
int			es_max_dead_letters_critical = 100;
int			es_recent_errors_kept = 1000;
int			es_notify_min_severity = 2;	/* high */

/* The handler context settings' variables: never read (the show hooks answer). */
static char *guc_subscription;
static char *guc_event_id;
static char *guc_event_type;
static char *guc_stream_id;
static char *guc_position;

static const char *
show_subscription(void)
{
	return es_current_event()->subscription;
}

static const char *
show_event_id(void)
{
	return es_current_event()->active ? es_current_event()->event_id : "";
}

static const char *
show_event_type(void)
{
	return es_current_event()->active ? es_current_event()->event_type : "";
}

static const char *
show_stream_id(void)
{
	return es_current_event()->active ? es_current_event()->stream_id : "";
}

static const char *
show_position(void)
{
	return es_current_event()->active ? es_current_event()->position_text : "";
}

static void
define_context_guc(const char *name, const char *desc, char **var,
				   GucShowHook hook)
{
	DefineCustomStringVariable(name, desc,
							   "Set by the subscription worker while a handler runs; empty elsewhere.",
							   var, "", PGC_INTERNAL,
							   GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							   NULL, NULL, hook);
}

static const struct config_enum_entry severity_options[] = {
	{"low", 0, false},
	{"medium", 1, false},
	{"high", 2, false},
	{"critical", 3, false},
	{"none", 4, false},
	{NULL, 0, false}
};

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

	DefineCustomStringVariable("eventsource.tenant",
							   "Tenant the transaction works in (set it with SET LOCAL).",
							   "Empty: the role's only tenant if it is bound to one, else 'default'. See eventsource.current_tenant().",
							   &es_tenant_setting,
							   "",
							   PGC_USERSET, 0,
							   es_tenant_check_hook, NULL, NULL);

	DefineCustomIntVariable("eventsource.drain_timeout",
							"Time a stopping subscription worker may take to finish its in-flight batch.",
							"After it, the batch is rolled back and will be delivered again.",
							&es_drain_timeout_ms_guc,
							10000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventsource.liveness_timeout",
							"Heartbeat age after which liveness() reports a worker or the launcher as not alive.",
							NULL,
							&es_liveness_timeout_ms,
							60000, 1000, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventsource.max_error_rate_per_minute",
							"Handler errors per minute at which a subscription is degraded.",
							NULL, &es_max_error_rate_per_minute,
							10, 1, INT_MAX, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.max_errors_warning",
							"Failed events at which a subscription is degraded.",
							NULL, &es_max_errors_warning,
							50, 1, INT_MAX, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.max_errors_critical",
							"Failed events at which a subscription is critical.",
							NULL, &es_max_errors_critical,
							200, 1, INT_MAX, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.max_lag_events_warning",
							"Lag in events at which a subscription is degraded.",
							NULL, &es_max_lag_events_warning,
							5000, 1, INT_MAX, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.max_lag_events_critical",
							"Lag in events at which a subscription is critical.",
							NULL, &es_max_lag_events_critical,
							50000, 1, INT_MAX, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.lag_count_limit",
							"Events after a partition's checkpoint that the status looks at to count its lag.",
							"Beyond them lag_events is a lower bound (lag_events_exact is false) and health judges the lag by lag_events_estimate.",
							&es_lag_count_limit,
							250, 1, 100000, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.max_dead_letters_warning",
							"Dead letters at which a subscription is degraded.",
							NULL, &es_max_dead_letters_warning,
							10, 1, INT_MAX, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.max_dead_letters_critical",
							"Dead letters at which a subscription is critical.",
							NULL, &es_max_dead_letters_critical,
							100, 1, INT_MAX, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eventsource.recent_errors_kept",
							"Handler errors kept per database in eventsource.recent_errors.",
							"Older rows are deleted as new ones arrive.",
							&es_recent_errors_kept,
							1000, 10, 1000000, PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("eventsource.notify_min_severity",
							 "Lowest severity of handler failures published on channel eventsource_errors.",
							 "Compared by rank: low < medium < high < critical; none disables.",
							 &es_notify_min_severity,
							 2, severity_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	define_context_guc("eventsource.subscription",
					   "Subscription whose handler is running.",
					   &guc_subscription, show_subscription);
	define_context_guc("eventsource.event_id",
					   "Id of the event the handler is processing.",
					   &guc_event_id, show_event_id);
	define_context_guc("eventsource.event_type",
					   "Type of the event the handler is processing.",
					   &guc_event_type, show_event_type);
	define_context_guc("eventsource.stream_id",
					   "Stream of the event the handler is processing.",
					   &guc_stream_id, show_stream_id);
	define_context_guc("eventsource.position",
					   "Global position of the event the handler is processing.",
					   &guc_position, show_position);
	es_trace_define_gucs();
	es_otlp_define_gucs(preloading);
	es_cleanup_define_gucs();

	if (!preloading)
	{
		MarkGUCPrefixReserved("eventsource");
		return;
	}

	DefineCustomIntVariable("eventsource.max_workers",
							"Number of subscription partitions the server can run (one worker process each).",
							"Each also needs a max_worker_processes slot; the launcher takes one more.",
							&es_max_workers,
							4, 1, 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventsource.max_databases",
							"Number of databases that can use the event store at the same time.",
							"Each needs a small entry in shared memory for its safe horizon.",
							&es_max_databases,
							64, 1, 10000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("eventsource.max_tenant_stats",
							"Number of (database, tenant) rows eventsource.tenant_stats can hold.",
							"About 170 bytes of shared memory each; the counts of tenants beyond it go to the row (other) of their database.",
							&es_max_tenant_stats,
							10000, 1, 1000000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("eventsource");
}
