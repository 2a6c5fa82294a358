// distill/core/error.hpp: the exception the convenience layer throws (when exceptions are on).
#pragma once

#include "config.hpp"
#include "status.hpp"

#if DISTILL_HAS_EXCEPTIONS
#include <stdexcept>
#endif

namespace distill {

#if DISTILL_HAS_EXCEPTIONS
/// Thrown by the convenience functions (distill::kd, ...) for bad input; carries the status.
class error : public std::invalid_argument {
public:
    explicit error(const distill::status& s) : std::invalid_argument(s.message()), status_(s) {}
    const distill::status& status() const noexcept { return status_; }

private:
    distill::status status_;
};
#endif

namespace detail {
/// Convenience-layer error path: throws distill::error with exceptions, else returns the status
/// for the caller to store in its result.
inline distill::status raise(const distill::status& s) {
#if DISTILL_HAS_EXCEPTIONS
    throw distill::error(s);
#else
    return s;
#endif
}
}  // namespace detail

}  // namespace distill
