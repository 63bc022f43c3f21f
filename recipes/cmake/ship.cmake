# Install script of the "buildtool" component (see CMakeLists.txt): the programs and every
# shared library in the build's bin/ directory, as regular files.
#
# A wheel cannot hold symbolic links, so each library is installed once, under the name the
# dynamic loader asks for (its SONAME link, e.g. libggml.so.0), instead of the chain
# libggml.so -> libggml.so.0 -> libggml.so.0.25.3 that CMake leaves in the build tree.
# (No IN_LIST here: install scripts run without the project's policies, and CMake < 3.28
# rejects it there.)
set(dest "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}/${BUILDTOOL_DESTINATION}")

foreach(program IN LISTS BUILDTOOL_PROGRAMS)
    set(found "")
    foreach(candidate "${program}" "${program}.exe")
        if(EXISTS "${BUILDTOOL_BIN}/${candidate}" AND NOT found)
            file(INSTALL "${BUILDTOOL_BIN}/${candidate}" DESTINATION "${dest}"
                 USE_SOURCE_PERMISSIONS)
            set(found TRUE)
        endif()
    endforeach()
    if(NOT found)
        message(FATAL_ERROR "the build produced no '${program}' in ${BUILDTOOL_BIN}: is it "
                            "a CMake target of this llama.cpp version?")
    endif()
endforeach()

set(libs "")
foreach(pattern IN LISTS BUILDTOOL_LIB_PATTERNS)
    file(GLOB matched LIST_DIRECTORIES false "${BUILDTOOL_BIN}/${pattern}")
    list(APPEND libs ${matched})
endforeach()
list(REMOVE_DUPLICATES libs)
list(SORT libs)

# real files some link points at directly: they are installed under that link's name
set(linked "")
foreach(lib IN LISTS libs)
    if(IS_SYMLINK "${lib}")
        file(READ_SYMLINK "${lib}" target)
        get_filename_component(target "${target}" NAME)
        if(NOT IS_SYMLINK "${BUILDTOOL_BIN}/${target}")
            list(APPEND linked "${target}")
        endif()
    endif()
endforeach()

foreach(lib IN LISTS libs)
    get_filename_component(name "${lib}" NAME)
    list(FIND BUILDTOOL_LEAVE_OUT "${name}" left_out)
    if(NOT left_out EQUAL -1)
        continue()
    endif()
    if(IS_SYMLINK "${lib}")
        file(READ_SYMLINK "${lib}" target)
        get_filename_component(target "${target}" NAME)
        # a link to a link (libggml.so) is only for linking against the library
        if(NOT IS_SYMLINK "${BUILDTOOL_BIN}/${target}")
            file(INSTALL "${BUILDTOOL_BIN}/${target}" DESTINATION "${dest}" RENAME "${name}"
                 USE_SOURCE_PERMISSIONS)
        endif()
    else()
        list(FIND linked "${name}" pointed_at)
        if(pointed_at EQUAL -1)
            file(INSTALL "${lib}" DESTINATION "${dest}" USE_SOURCE_PERMISSIONS)
        endif()
    endif()
endforeach()
