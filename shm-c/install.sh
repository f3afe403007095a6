#!/usr/bin/env bash
# Installs the C library of shm: the static and shared libraries, shm.h and shm.hpp, a
# pkg-config file (shm.pc) and a CMake package (shmConfig.cmake), under PREFIX
# (default /usr/local), so that
#
#   cc prog.c $(pkg-config --cflags --libs shm)             (PKG_CONFIG_PATH=PREFIX/lib/pkgconfig
#                                                             for a prefix pkg-config does not know)
#   find_package(shm REQUIRED) ... target_link_libraries(app shm::shm)   (CMake)
#
# work. The shared library is linked by default, with PREFIX/lib as its run path, so a
# program runs without LD_LIBRARY_PATH; `pkg-config --static --libs shm` gives the static
# library's extra system libraries.
#
#   bash shm-c/install.sh [PREFIX]            (builds the release library first)
#   PROFILE=debug bash shm-c/install.sh PREFIX  (the debug build; the tests use it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
prefix=${1:-/usr/local}
profile=${PROFILE:-release}
target=${CARGO_TARGET_DIR:-$root/target}
if [[ $profile == release ]]; then
    (cd "$root" && cargo build --release -q -p shm-c)
else
    (cd "$root" && cargo build -q -p shm-c)
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/shm" "$prefix/include"
install -m 0644 "$target/$profile/libshm_c.a" "$prefix/lib/libshm_c.a"
install -m 0755 "$target/$profile/libshm_c.so" "$prefix/lib/libshm_c.so"
install -m 0644 "$here/include/shm.h" "$here/include/shm.hpp" "$prefix/include/"
cat >"$prefix/lib/pkgconfig/shm.pc" <<PC
prefix=$prefix
libdir=\${prefix}/lib
includedir=\${prefix}/include

Name: shm
Description: Shared memory between Linux processes: channels and broadcasts from C and C++
Version: $version
Libs: -L\${libdir} -Wl,-rpath,\${libdir} -lshm_c
Libs.private: -lpthread -ldl -lm
Cflags: -I\${includedir}
PC
cat >"$prefix/lib/cmake/shm/shmConfig.cmake" <<CM
# shm's CMake package: find_package(shm REQUIRED), then link shm::shm (shared) or
# shm::shm_static.
get_filename_component(_shm_prefix "\${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET shm::shm)
  add_library(shm::shm SHARED IMPORTED)
  set_target_properties(shm::shm PROPERTIES
    IMPORTED_LOCATION "\${_shm_prefix}/lib/libshm_c.so"
    INTERFACE_INCLUDE_DIRECTORIES "\${_shm_prefix}/include")
  add_library(shm::shm_static STATIC IMPORTED)
  set_target_properties(shm::shm_static PROPERTIES
    IMPORTED_LOCATION "\${_shm_prefix}/lib/libshm_c.a"
    INTERFACE_INCLUDE_DIRECTORIES "\${_shm_prefix}/include"
    INTERFACE_LINK_LIBRARIES "pthread;dl;m")
endif()
set(shm_VERSION $version)
CM
echo "installed shm $version ($profile) under $prefix"
