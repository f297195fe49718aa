# Helpers shared by every part's CMakeLists.txt.

# fgw_unit_test(NAME name SOURCES a.c ... LIBS lib ...)
# A cmocka test, labelled "unit": the sanitizer build and valgrind run these.
function(fgw_unit_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  if(NOT BUILD_TESTING)
    return()
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  target_compile_definitions(${T_NAME} PRIVATE FGW_TEST_DATA="${FGW_TEST_DATA}"
    FGW_SOURCE_DIR="${FGW_SOURCE_DIR}")
  add_test(NAME unit/${T_NAME} COMMAND ${T_NAME})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  set_tests_properties(unit/${T_NAME} PROPERTIES LABELS unit TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout")
endfunction()

# fgw_fuzzer(NAME fuzz-x SOURCES f.c LIBS ... CORPUS dir [RUNS n])
# Built only with FGW_FUZZ=ON. CTest replays the seed corpus and then tries RUNS new inputs;
# `make fuzz` runs each target for FUZZ_SECONDS.
function(fgw_fuzzer)
  cmake_parse_arguments(F "" "NAME;CORPUS;RUNS;MAX_LEN" "SOURCES;LIBS" ${ARGN})
  if(NOT FGW_FUZZ OR NOT BUILD_TESTING)
    return()
  endif()
  if(NOT F_RUNS)
    set(F_RUNS 20000)
  endif()
  if(NOT F_MAX_LEN)
    set(F_MAX_LEN 4096)
  endif()
  add_executable(${F_NAME} ${F_SOURCES})
  target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
  target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer)
  set(work ${CMAKE_CURRENT_BINARY_DIR}/${F_NAME}-corpus)
  # The seed corpus is read-only input; new finds go to a scratch dir in the build tree.
  add_test(NAME fuzz/${F_NAME}
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=1
      sh -c "mkdir -p '${work}' && exec '$<TARGET_FILE:${F_NAME}>' -runs=${F_RUNS} -max_len=${F_MAX_LEN} -seed=1 -timeout=10 '${work}' '${F_CORPUS}'")
  set_tests_properties(fuzz/${F_NAME} PROPERTIES LABELS fuzz TIMEOUT 300)
  set_property(GLOBAL APPEND PROPERTY FGW_FUZZERS "${F_NAME}|$<TARGET_FILE:${F_NAME}>|${F_CORPUS}")
endfunction()
