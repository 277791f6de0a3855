/*
 * A guard around librdkafka's rd_kafka_metadata_update_op, linked in its place into the `wharf`
 * binary and this package's tests and benches by build.rs, with the linker's
 * `--wrap=rd_kafka_metadata_update_op`: librdkafka's call goes to __wrap_..., and __real_...
 * is the original.
 *
 * Why: librdkafka 2.12.1 (and 2.15.0, its newest release, still) crashes the whole process with
 * SIGSEGV on its own thread when a Fetch response names a new partition leader (KIP-951's
 * `CurrentLeader` and `NodeEndpoints` tagged fields) for a zero topic id. Its fetcher
 * (rd_kafka_handle_Fetch_metadata_update) builds a metadata update with the topic's id and no
 * name, and rd_kafka_metadata_update_op looks a zero id up by that missing name:
 * rd_kafka_metadata_cache_find(rk, NULL) -> strcmp(NULL). A broker that loses its topics while a
 * consumer reads them answers so: tansu 0.6.0 with its in-memory storage, restarted, answers a
 * fetch for a topic id it does not know with exactly that (tansu-storage's fetch.rs,
 * `unknown_topic_response`), so every running logshuttle died at the broker's restart (issue 23,
 * benches/RESULTS.md "Fleet drill", finding 3). Nothing a client setting does keeps librdkafka
 * off that path, and nothing in Wharf runs before it (it is a broker thread's reaction to a
 * response).
 *
 * What: an update whose topics are named by id only (a name is NULL) comes only from a Fetch
 * response (the Produce path names its topic), and is dropped whole: the consumer then finds a
 * moved leader the way librdkafka did before KIP-951, by the metadata refresh its fetcher asks
 * for anyway on NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION and the like
 * (rd_kafka_toppar_leader_unavailable in rdkafka_fetcher.c, called whatever the tags say). That
 * also keeps the fetcher's other open bug in the same update off (librdkafka issue 5280: a
 * `CurrentLeader` with leader -1 leaves uninitialised partitions in it). Updates with names
 * (Produce responses) go to librdkafka unchanged.
 *
 * The guard reads only the public rd_kafka_metadata_t (rdkafka.h), which librdkafka keeps as the
 * first field of the internal update (rdkafka_metadata.h: "Must be kept the first field"), and
 * returns RD_KAFKA_OP_RES_HANDLED (1, rdkafka_op.h), after which the caller (rd_kafka_poll_cb)
 * frees the update as it does after the real function. The build stops on any other librdkafka
 * version, so that an upgrade is checked against this (is the crash fixed there? are the name,
 * the signature and the result the same?).
 */
#include <stddef.h>

#include "rdkafka.h"

#if RD_KAFKA_VERSION != 0x020c01ff
#error "librdkafka is not 2.12.1: check src/fetch_leader_guard.c against it (see its comment), then update this version"
#endif

/* librdkafka's rd_kafka_op_res_t value RD_KAFKA_OP_RES_HANDLED: the op was handled, free it. */
#define WHARF_OP_RES_HANDLED 1

/* The original, under --wrap (build.rs links this file only together with the flag). */
extern int __real_rd_kafka_metadata_update_op(rd_kafka_t *rk, void *mdi);

/* How many updates the guard dropped: for a debugger (`print wharf_fetch_leader_updates_dropped`). */
volatile unsigned long wharf_fetch_leader_updates_dropped;

int __wrap_rd_kafka_metadata_update_op(rd_kafka_t *rk, void *mdi);

int __wrap_rd_kafka_metadata_update_op(rd_kafka_t *rk, void *mdi) {
        const rd_kafka_metadata_t *md = mdi;
        int i;

        for (i = 0; i < md->topic_cnt; i++) {
                if (md->topics[i].topic == NULL) {
                        wharf_fetch_leader_updates_dropped++;
                        return WHARF_OP_RES_HANDLED;
                }
        }
        return __real_rd_kafka_metadata_update_op(rk, mdi);
}
