# Sums the "Totals" blocks that "stestr run" (and "tempest run") print at
# the end of each run:
#   ======
#   Totals
#   ======
#   Ran: 12 tests in 3.2 sec.
#    - Passed: 11
#    - Skipped: 1
#    - Expected Fail: 0
#    - Unexpected Success: 0
#    - Failed: 0
#   Sum of execute time for each test: ...
# and prints "PASSED FAILED SKIPPED RUNS" (expected failures count as
# passed, unexpected successes as failed). Counting from a run's own
# output, rather than "stestr last", never reports an older run when a
# later one did not start.
/^Totals$/ { totals = 1; runs++; next }
/^Sum of execute time/ { totals = 0 }
totals && /^ - Passed: [0-9]+$/ { passed += $3 }
totals && /^ - Expected Fail: [0-9]+$/ { passed += $4 }
totals && /^ - Skipped: [0-9]+$/ { skipped += $3 }
totals && /^ - Failed: [0-9]+$/ { failed += $3 }
totals && /^ - Unexpected Success: [0-9]+$/ { failed += $4 }
END { printf "%d %d %d %d\n", passed, failed, skipped, runs }
