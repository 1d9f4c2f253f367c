# Locate Python and the installed torch without torch's own TorchConfig (which probes CUDA/MKL and
# is slow); everything we need is the include dirs, three libraries and the C++ ABI flag.
find_package(Python 3.11 REQUIRED COMPONENTS Interpreter Development.Module)

execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
    "import torch, torch.utils.cpp_extension as c, os; print(','.join(c.include_paths())); print(os.path.join(os.path.dirname(torch.__file__), 'lib')); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
  OUTPUT_VARIABLE _a1_torch_info OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _a1_torch_rc)
if(NOT _a1_torch_rc EQUAL 0)
  message(FATAL_ERROR "a1_ext: `import torch` failed in ${Python_EXECUTABLE}; install torch first "
                      "(pip install torch==2.13.0) and build with --no-build-isolation")
endif()
string(REPLACE "\n" ";" _a1_torch_info "${_a1_torch_info}")
list(GET _a1_torch_info 0 _a1_inc)
list(GET _a1_torch_info 1 TORCH_LIB_DIR)
list(GET _a1_torch_info 2 TORCH_CXX11_ABI)
list(GET _a1_torch_info 3 TORCH_VERSION)
string(REPLACE "," ";" TORCH_INCLUDE_DIRS "${_a1_inc}")
message(STATUS "a1_ext: torch ${TORCH_VERSION} from ${TORCH_LIB_DIR}")

foreach(_lib c10 torch_cpu torch)
  find_library(_a1_lib_${_lib} NAMES ${_lib} PATHS "${TORCH_LIB_DIR}" NO_DEFAULT_PATH REQUIRED)
  list(APPEND A1_TORCH_LIBRARIES "${_a1_lib_${_lib}}")
endforeach()

# Portable flags: no -march=native. Hot loops get AVX2/FMA clones at run time through
# A1_MULTIVERSION (csrc/common/simd.h), so one wheel runs on any x86-64.
set(A1_CXX_FLAGS -O3 -fno-math-errno -Wall -Wno-unused-function -Wno-psabi -D_GLIBCXX_USE_CXX11_ABI=${TORCH_CXX11_ABI})

# at::parallel_for is a header template: its `#pragma omp parallel` only takes effect in a
# translation unit compiled with -fopenmp, otherwise every parallel_for silently runs on one
# thread. Compile with OpenMP but link no runtime of our own: the GOMP_* symbols resolve to the
# libgomp that libtorch_cpu already loads (a second OpenMP runtime would mean two thread pools).
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND A1_CXX_FLAGS -fopenmp)
endif()
