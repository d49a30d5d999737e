# drill: per-pod workers (issue 3). Included by tests/drill/CMakeLists.txt,
# which sets DRILL_DIR.
tscni_test(NAME worker_kill9 LABEL drill TIMEOUT 300 COMMAND bash ${DRILL_DIR}/worker_kill9.sh)
tscni_test(NAME worker_adoption LABEL drill TIMEOUT 180 COMMAND bash ${DRILL_DIR}/worker_adoption.sh)
tscni_test(NAME worker_podman LABEL drill TIMEOUT 300 COMMAND bash ${DRILL_DIR}/worker_podman.sh)
# The re-adoption drill edits records with this (sealed like the supervisor's).
add_executable(record_edit ${DRILL_DIR}/record_edit.c)
target_link_libraries(record_edit PRIVATE tscommon)
