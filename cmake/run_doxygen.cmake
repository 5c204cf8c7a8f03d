# cmake -DDOXYGEN=... -DDOXYFILE=... -DLOG=... -P run_doxygen.cmake
# Runs Doxygen and fails on any warning: on its exit status (the Doxyfile
# says WARN_AS_ERROR = FAIL_ON_WARNINGS) and, should a Doxygen ignore that
# setting, on a warning log that is not empty. The warnings are printed.
file(REMOVE ${LOG})
execute_process(COMMAND ${DOXYGEN} ${DOXYFILE} RESULT_VARIABLE rc)
set(warnings "")
if(EXISTS ${LOG})
  file(READ ${LOG} warnings)
  string(STRIP "${warnings}" warnings)
endif()
if(NOT rc EQUAL 0 OR NOT warnings STREQUAL "")
  message("${warnings}")
  message(FATAL_ERROR "docs: doxygen failed (exit status ${rc}) or warned: every public "
    "function, parameter, return value, struct, field, enum and macro in include/plexus/ "
    "needs a doc comment (log: ${LOG})")
endif()
get_filename_component(out ${LOG} DIRECTORY)
message(STATUS "docs: the API reference is in ${out}/html/index.html")
