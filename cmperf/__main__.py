from cmperf.cli_entry import run

run()
