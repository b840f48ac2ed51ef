# The host corpus' cmake case (tests/host/run_corpus.py): cmake -P runs a
# pipeline of two children (libuv's process and pipe handling) that reads
# cmake's stdin, then prints a summary on stdout.
execute_process(COMMAND cat COMMAND sort
  OUTPUT_VARIABLE sorted RESULT_VARIABLE status TIMEOUT 60)
string(REGEX MATCHALL "\n" newlines "${sorted}")
list(LENGTH newlines count)
string(SUBSTRING "${sorted}" 0 40 head)
message(STATUS "pipeline status: ${status}; ${count} lines sorted; first: ${head}")
