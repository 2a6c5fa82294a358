// tests/float_only/float_path.hpp: the entry points of the float-only translation unit.
#pragma once

#include <cstddef>
#include <cstdint>

namespace float_only {
template <class T>
struct results;
/// Every method of cases.hpp in float.
void run_float(const float* student, const float* teacher, const std::int32_t* labels, results<float>& r) noexcept;
/// The message of a kd call with temperature -1.5f; true when it is a value error that wrote nothing.
bool float_error_message(char* out, std::size_t capacity) noexcept;
}  // namespace float_only
