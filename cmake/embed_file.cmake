# cmake -DIN=file -DOUT=file.cpp -DNAME=kName -DNAMESPACE=ns -P embed_file.cmake
# Writes a C++ source defining `const unsigned char NAME[]` (the bytes of IN, then a NUL)
# and `const size_t NAME##Size` (without the NUL) in NAMESPACE: a file embedded in the
# binary without a build tool. The output is replaced only when it changes.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n_bytes "${n_hex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# 32 bytes a line, so the generated file stays readable in a diff or a debugger.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" bytes "${bytes}")
get_filename_component(in_name "${IN}" NAME)
file(WRITE "${OUT}.new"
     "// Generated from ${in_name} by cmake/embed_file.cmake; edit the source, not this file.\n"
     "#include <cstddef>\n"
     "namespace ${NAMESPACE} {\n"
     "extern const unsigned char ${NAME}[] = {\n${bytes}0x00};\n"
     "extern const size_t ${NAME}Size = ${n_bytes};\n"
     "}  // namespace ${NAMESPACE}\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.new" "${OUT}")
file(REMOVE "${OUT}.new")
