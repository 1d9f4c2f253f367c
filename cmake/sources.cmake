# The sources of a1_ext._C, listed per op family (csrc/<family>/) rather than found by name globs,
# so the build does not depend on file-naming conventions and a stray file cannot slip into the
# shipped module. A file added under csrc/ must be listed here: configure fails on one that is not.
#
#   CPU        torch glue of the CPU kernels (TORCH_LIBRARY_IMPL(a1, CPU, m)) and shared checks
#   COMPOSITE  ops built from other a1 ops through the dispatcher, registered for CPU and CUDA
#   PYBIND     Python classes bound into _C by csrc/module.cpp
#   CUDA       nvcc: kernels and torch-free launchers (cmake/cuda.cmake, only with A1_CUDA)
#   GLUE       g++: TORCH_LIBRARY_IMPL(a1, CUDA, m) glue (cmake/cuda.cmake, only with A1_CUDA)
# Each kind accumulates into A1_<KIND>_SOURCES. Headers are not listed (compiled via these files).
set(A1_MODULE_SOURCES csrc/module.cpp csrc/ops.cpp)
set(_a1_kinds CPU COMPOSITE PYBIND CUDA GLUE)

function(a1_family name)
  cmake_parse_arguments(PARSE_ARGV 1 _f "" "" "${_a1_kinds}")
  if(_f_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "a1_family(${name}): '${_f_UNPARSED_ARGUMENTS}' follows no kind (${_a1_kinds})")
  endif()
  foreach(_kind IN LISTS _a1_kinds)
    list(TRANSFORM _f_${_kind} PREPEND "csrc/${name}/")
    set(A1_${_kind}_SOURCES ${A1_${_kind}_SOURCES} ${_f_${_kind}} PARENT_SCOPE)
  endforeach()
endfunction()

a1_family(attention CPU paged_attention_cpu.cpp CUDA paged_attention.cu GLUE attention_cuda.cpp)
a1_family(cache CPU cache_cpu.cpp CUDA copy_blocks.cu reshape_and_cache.cu GLUE cache_cuda.cpp)
a1_family(common CPU checks_cpu.cpp CUDA cuda_status.cu)
a1_family(layer COMPOSITE decoder_layer_composite.cpp)
a1_family(linear CPU linear_cpu.cpp GLUE linear_cuda.cpp)
a1_family(norm CPU norm_cpu.cpp CUDA rms_norm.cu GLUE norm_cuda.cpp)
a1_family(pointwise CPU pointwise_cpu.cpp CUDA pointwise.cu GLUE pointwise_cuda.cpp)
a1_family(quant CPU quant_cpu.cpp CUDA dequantize.cu quant_gemv.cu round_activations.cu GLUE quant_cuda.cpp)
a1_family(quantile PYBIND quantile_bindings.cpp)
a1_family(sampling CPU sampling_cpu.cpp CUDA sample.cu speculative_verify.cu GLUE sampling_cuda.cpp)
a1_family(score CPU score_cpu.cpp CUDA linear_step_score.cu step_score.cu GLUE score_cuda.cpp)

# Test programs, never part of _C: the pybind11 module of QuantileBuffer's C++ test drivers and
# the standalone ThreadSanitizer program (CMakeLists.txt).
set(A1_TEST_DRIVER_SOURCES csrc/quantile/quantile_test_drivers.cpp)
set(A1_TSAN_SOURCES csrc/quantile/quantile_buffer_tsan.cpp)

# Every listed file exists (a CPU-only build checks the CUDA lists too), and every source file
# under csrc/ is listed: a forgotten one would otherwise be left out of the build silently.
set(_a1_listed ${A1_MODULE_SOURCES} ${A1_TEST_DRIVER_SOURCES} ${A1_TSAN_SOURCES})
foreach(_kind IN LISTS _a1_kinds)
  list(APPEND _a1_listed ${A1_${_kind}_SOURCES})
endforeach()
foreach(_file IN LISTS _a1_listed)
  if(NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${_file}")
    message(FATAL_ERROR "a1_ext: cmake/sources.cmake lists ${_file}, which does not exist")
  endif()
endforeach()
file(GLOB_RECURSE _a1_on_disk RELATIVE "${CMAKE_CURRENT_SOURCE_DIR}" csrc/*.cpp csrc/*.cu)
list(REMOVE_ITEM _a1_on_disk ${_a1_listed})
if(_a1_on_disk)
  list(JOIN _a1_on_disk ", " _a1_unlisted)
  message(FATAL_ERROR "a1_ext: not listed in cmake/sources.cmake: ${_a1_unlisted}; add each to its "
                      "family's a1_family(...) line (or to the test programs)")
endif()
