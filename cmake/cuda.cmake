# CUDA kernels of a1_ext._C, included by CMakeLists.txt after the target _C exists.
#
# A1_CUDA=ON (setup.py passes it: A1_CUDA=1, or auto with a CUDA torch and nvcc) compiles the
# families' lists of cmake/sources.cmake:
#   A1_CUDA_SOURCES   csrc/<family>/*.cu: kernels + torch-free launchers -> static library
#                     a1_cuda_kernels (nvcc)
#   A1_GLUE_SOURCES   csrc/<family>/*_cuda.cpp: thin torch glue, TORCH_LIBRARY_IMPL(a1, CUDA, m)
#                     -> added to _C (g++)
# for the architectures of TORCH_CUDA_ARCH_LIST ("8.0;9.0" by default; "+PTX" also embeds PTX).
# The kernels never include torch, so their flags stay separate from _C's host-only flags.
# Without a GPU or a CUDA torch, cmake/check_cuda_compile.sh compiles the same sources (CI).
option(A1_CUDA "compile the CUDA kernels into a1_ext._C" OFF)
if(NOT A1_CUDA)
  return()
endif()

set(TORCH_CUDA_ARCH_LIST "8.0;9.0" CACHE STRING "CUDA architectures, torch style: '8.0;9.0', '9.0+PTX', '9.0a'")

# "8.0;9.0+PTX" -> 80-real;90-real;90-virtual. The kernels use bf16 tensor cores (WMMA), so sm_80
# is the floor.
string(REPLACE " " ";" _a1_arch_items "${TORCH_CUDA_ARCH_LIST}")
set(_a1_cuda_archs "")
foreach(_item IN LISTS _a1_arch_items)
  if(_item STREQUAL "")
    continue()
  endif()
  if(NOT _item MATCHES "^([0-9]+)\\.([0-9])([af]?)(\\+PTX)?$")
    message(FATAL_ERROR "a1_ext: TORCH_CUDA_ARCH_LIST entry '${_item}' is not of the form 8.0, 9.0a or 9.0+PTX")
  endif()
  set(_major "${CMAKE_MATCH_1}")
  set(_arch "${CMAKE_MATCH_1}${CMAKE_MATCH_2}${CMAKE_MATCH_3}")
  set(_ptx "${CMAKE_MATCH_4}")
  if(_major LESS 8)
    message(FATAL_ERROR "a1_ext: CUDA kernels need compute capability >= 8.0 (bf16 WMMA), got '${_item}'")
  endif()
  list(APPEND _a1_cuda_archs "${_arch}-real")
  if(_ptx)
    list(APPEND _a1_cuda_archs "${_arch}-virtual")
  endif()
endforeach()
if(NOT _a1_cuda_archs)
  message(FATAL_ERROR "a1_ext: TORCH_CUDA_ARCH_LIST is empty")
endif()
set(CMAKE_CUDA_ARCHITECTURES ${_a1_cuda_archs})
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
message(STATUS "a1_ext: CUDA kernels for ${CMAKE_CUDA_ARCHITECTURES} with nvcc ${CMAKE_CUDA_COMPILER_VERSION}")

# torch's CUDA libraries: present only in a CUDA build of torch.
foreach(_lib torch_cuda c10_cuda)
  find_library(_a1_lib_${_lib} NAMES ${_lib} PATHS "${TORCH_LIB_DIR}" NO_DEFAULT_PATH)
  if(NOT _a1_lib_${_lib})
    message(FATAL_ERROR "a1_ext: A1_CUDA=1 needs a CUDA build of torch, but lib${_lib}.so is not in "
                        "${TORCH_LIB_DIR} (torch ${TORCH_VERSION}). Install a CUDA torch or build with A1_CUDA=0; "
                        "cmake/check_cuda_compile.sh compiles the CUDA sources without one.")
  endif()
endforeach()

add_library(a1_cuda_kernels STATIC ${A1_CUDA_SOURCES})
target_include_directories(a1_cuda_kernels PRIVATE csrc)
set_target_properties(a1_cuda_kernels PROPERTIES
  CUDA_STANDARD 17
  CUDA_STANDARD_REQUIRED ON
  POSITION_INDEPENDENT_CODE ON)
# -lineinfo keeps profiles readable; no fast-math: the random ops must round exactly like the twins.
# -fmad=false: nvcc's default contracts `a * b + c` into one FMA (one rounding instead of two), while
# the PyTorch twins round the product first; in the normalizers (softmax sums, log-sum-exp, RMSNorm)
# that moves results by an ulp, enough to flip a near-tied argmax or a sampled token, so exact token
# agreement with the twins would hold only up to such ties.
# cmake/check_cuda_compile.sh compiles with the same flag.
target_compile_options(a1_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo -fmad=false -Xcompiler=-Wall>)
# Static cudart: the extension then needs no libcudart.so.N on the loader path, whatever CUDA
# version torch itself was built with.
target_link_libraries(a1_cuda_kernels PRIVATE CUDA::cudart_static)

target_sources(_C PRIVATE ${A1_GLUE_SOURCES})
target_include_directories(_C PRIVATE ${CUDAToolkit_INCLUDE_DIRS})
target_compile_definitions(_C PRIVATE A1_WITH_CUDA=1)
target_link_libraries(_C PRIVATE a1_cuda_kernels "${_a1_lib_torch_cuda}" "${_a1_lib_c10_cuda}" CUDA::cudart_static)
