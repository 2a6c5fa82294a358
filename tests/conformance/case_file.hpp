// case_file.hpp - reader for conformance `.case` files.
//
// Self-contained (standard library only), header-only, C++20. The format is
// specified in conformance/FORMAT.md; in short:
//
//   distill-case 1                     first non-comment line, format version
//   method <id>
//   param <name> <value>               zero or more
//   tensor input  <name> <d0> <d1> ... then prod(d) values (any number of lines)
//   tensor expect <name> <d0> <d1> ... same, an output the call must produce
//   error <kind>                       instead of expect lines (shape | value)
//   tolerance <rtol> <atol>            optional, default 1e-7 1e-9
//   end
//
// `#` starts a comment anywhere on a line. Parsing is strict: every problem
// is reported as "<file>:<line>: <problem>" and no exception is thrown for
// malformed input.
#pragma once

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <istream>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace distill_conformance {

// One tensor record. Exactly one of `real` / `integer` holds the values
// (`integer` when `is_integer`), in row-major order; a tensor without
// dimensions is a scalar holding one value.
struct tensor_data {
    std::string name;
    std::vector<std::int64_t> shape;
    std::vector<double> real;
    std::vector<std::int64_t> integer;
    bool is_integer = false;

    // Number of elements: product of `shape` (1 for a scalar).
    std::int64_t size() const {
        std::int64_t n = 1;
        for (std::int64_t d : shape) n *= d;
        return n;
    }
};

struct case_data {
    std::string path;    // file the case came from ("" for an anonymous stream)
    std::string method;
    std::vector<std::pair<std::string, std::string>> params;  // in file order
    std::vector<tensor_data> inputs;                          // in file order
    std::vector<tensor_data> expects;                         // in file order
    std::string error;   // expected error kind ("shape", "value"); "" when none
    double rtol = 1e-7;
    double atol = 1e-9;
    bool has_tolerance = false;  // true when the file had a `tolerance` line

    const tensor_data* input(std::string_view name) const { return find(inputs, name); }
    const tensor_data* expect(std::string_view name) const { return find(expects, name); }
    const std::string* param(std::string_view name) const {
        for (const auto& p : params)
            if (p.first == name) return &p.second;
        return nullptr;
    }

private:
    static const tensor_data* find(const std::vector<tensor_data>& v, std::string_view name) {
        for (const auto& t : v)
            if (t.name == name) return &t;
        return nullptr;
    }
};

// FORMAT.md: inputs named `labels`, `index`, `*.index` or ending in `_index`
// hold integers; all other tensors hold real numbers.
inline bool is_integer_tensor_name(std::string_view name) {
    return name == "labels" || name == "index" || name.ends_with(".index") ||
           name.ends_with("_index");
}

// FORMAT.md's matching rule: |got - want| <= atol + rtol * |want|; nan
// matches only nan, inf only inf of the same sign.
inline bool values_match(double got, double want, double rtol, double atol) {
    if (std::isnan(want)) return std::isnan(got);
    if (std::isnan(got)) return false;
    if (std::isinf(want) || std::isinf(got)) return got == want;
    return std::fabs(got - want) <= atol + rtol * std::fabs(want);
}

namespace detail {

inline bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

// Splits a line into blank-separated tokens, dropping everything from `#`.
inline void tokenize(std::string_view line, std::vector<std::string_view>& tokens) {
    tokens.clear();
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    std::size_t i = 0;
    while (i < line.size()) {
        while (i < line.size() && is_blank(line[i])) ++i;
        std::size_t start = i;
        while (i < line.size() && !is_blank(line[i])) ++i;
        if (i > start) tokens.push_back(line.substr(start, i - start));
    }
}

inline bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Parses a whole token as a double: `%.17g` numbers plus nan / inf / -inf
// (case-insensitive; `infinity` and a leading `+` are accepted too).
inline bool parse_real(std::string_view tok, double& out) {
    if (tok.empty()) return false;
    bool negative = false;
    std::string_view body = tok;
    if (body.front() == '+' || body.front() == '-') {
        negative = body.front() == '-';
        body.remove_prefix(1);
    }
    if (iequals(body, "nan")) {
        out = negative ? -std::numeric_limits<double>::quiet_NaN()
                       : std::numeric_limits<double>::quiet_NaN();
        return true;
    }
    if (iequals(body, "inf") || iequals(body, "infinity")) {
        out = negative ? -std::numeric_limits<double>::infinity()
                       : std::numeric_limits<double>::infinity();
        return true;
    }
    // A plain decimal number: must start with a digit or '.' after the sign.
    if (body.empty() || !(is_digit(body.front()) || body.front() == '.')) return false;
    for (char c : body)
        if (!(is_digit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
            return false;
    double value = 0.0;
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
    const char* first = body.data();
    const char* last = body.data() + body.size();
    auto [ptr, ec] = std::from_chars(first, last, value, std::chars_format::general);
    if (ptr != last) return false;
    if (ec == std::errc::result_out_of_range) {
        // Accept underflow to zero / subnormal (the token is a valid number),
        // reject overflow: a %.17g writer would have written `inf`.
        std::string copy(body);
        errno = 0;
        value = std::strtod(copy.c_str(), nullptr);
        if (std::isinf(value)) return false;
    } else if (ec != std::errc()) {
        return false;
    }
#else
    std::string copy(body);
    char* end = nullptr;
    errno = 0;
    value = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) return false;
    if (errno == ERANGE && std::isinf(value)) return false;
#endif
    out = negative ? -value : value;
    return true;
}

// Parses a whole token as a (signed, optionally `+`-prefixed) int64.
inline bool parse_int(std::string_view tok, std::int64_t& out) {
    if (!tok.empty() && tok.front() == '+') {
        tok.remove_prefix(1);
        if (!tok.empty() && tok.front() == '-') return false;
    }
    if (tok.empty()) return false;
    const char* last = tok.data() + tok.size();
    auto [ptr, ec] = std::from_chars(tok.data(), last, out);
    return ec == std::errc() && ptr == last;
}

// Tensor, method and parameter names: [A-Za-z_][A-Za-z0-9_.-]*
inline bool is_identifier(std::string_view s) {
    if (s.empty()) return false;
    auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
    if (!alpha(s.front())) return false;
    for (char c : s)
        if (!(alpha(c) || is_digit(c) || c == '.' || c == '-')) return false;
    return true;
}

inline bool is_keyword(std::string_view s) {
    return s == "distill-case" || s == "method" || s == "param" || s == "tensor" ||
           s == "error" || s == "tolerance" || s == "end";
}

class parser {
public:
    parser(std::istream& in, std::string name) : in_(in), name_(std::move(name)) {}

    bool run(case_data& c, std::string& msg) {
        // Header: first non-comment line.
        if (!next_record()) return fail(msg, "empty file: expected 'distill-case 1'");
        if (tokens_[0] != "distill-case")
            return fail(msg, "first line must be 'distill-case 1', got '" + std::string(tokens_[0]) + "'");
        if (tokens_.size() != 2)
            return fail(msg, "'distill-case' takes exactly one argument (the version)");
        if (tokens_[1] != "1")
            return fail(msg, "unsupported format version '" + std::string(tokens_[1]) + "' (expected 1)");

        bool seen_end = false;
        while (!seen_end) {
            if (!next_record()) return fail(msg, "unexpected end of file: missing 'end'");
            const std::string_view kw = tokens_[0];
            if (kw == "method") {
                if (!c.method.empty()) return fail(msg, "duplicate 'method' record");
                if (tokens_.size() != 2) return fail(msg, "'method' takes exactly one argument");
                if (!is_identifier(tokens_[1]))
                    return fail(msg, "bad method id '" + std::string(tokens_[1]) + "'");
                c.method = std::string(tokens_[1]);
            } else if (kw == "param") {
                if (tokens_.size() != 3) return fail(msg, "'param' takes exactly two arguments: <name> <value>");
                if (!is_identifier(tokens_[1]))
                    return fail(msg, "bad parameter name '" + std::string(tokens_[1]) + "'");
                if (c.param(tokens_[1]) != nullptr)
                    return fail(msg, "duplicate parameter '" + std::string(tokens_[1]) + "'");
                c.params.emplace_back(std::string(tokens_[1]), std::string(tokens_[2]));
            } else if (kw == "tensor") {
                if (!read_tensor(c, msg)) return false;
            } else if (kw == "error") {
                if (!c.error.empty()) return fail(msg, "duplicate 'error' record");
                if (tokens_.size() != 2) return fail(msg, "'error' takes exactly one argument (the kind)");
                if (tokens_[1] != "shape" && tokens_[1] != "value")
                    return fail(msg, "unknown error kind '" + std::string(tokens_[1]) +
                                         "' (expected 'shape' or 'value')");
                if (!c.expects.empty()) return fail(msg, "'error' and 'tensor expect' records are exclusive");
                c.error = std::string(tokens_[1]);
            } else if (kw == "tolerance") {
                if (c.has_tolerance) return fail(msg, "duplicate 'tolerance' record");
                if (tokens_.size() != 3) return fail(msg, "'tolerance' takes exactly two arguments: <rtol> <atol>");
                double r = 0, a = 0;
                if (!parse_real(tokens_[1], r) || !std::isfinite(r) || r < 0)
                    return fail(msg, "bad rtol '" + std::string(tokens_[1]) + "' (expected a finite number >= 0)");
                if (!parse_real(tokens_[2], a) || !std::isfinite(a) || a < 0)
                    return fail(msg, "bad atol '" + std::string(tokens_[2]) + "' (expected a finite number >= 0)");
                c.rtol = r;
                c.atol = a;
                c.has_tolerance = true;
            } else if (kw == "end") {
                if (tokens_.size() != 1) return fail(msg, "'end' takes no arguments");
                seen_end = true;
            } else if (kw == "distill-case") {
                return fail(msg, "'distill-case' may only appear on the first line");
            } else {
                double ignored = 0;
                if (parse_real(kw, ignored))
                    return fail(msg, "unexpected value '" + std::string(kw) +
                                         "' (too many values for the preceding tensor?)");
                return fail(msg, "unknown record '" + std::string(kw) + "'");
            }
        }
        end_line_ = line_no_;
        if (next_record())
            return fail(msg, "unexpected '" + std::string(tokens_[0]) + "' after 'end'");
        if (in_.bad()) return fail(msg, "read error");

        line_no_ = end_line_;
        if (c.method.empty()) return fail(msg, "missing 'method' record");
        if (c.error.empty() && c.expects.empty())
            return fail(msg, "case has neither 'tensor expect' nor 'error' records");
        return true;
    }

private:
    // Reads the next line that has tokens; false at end of input.
    bool next_record() {
        while (std::getline(in_, line_)) {
            ++line_no_;
            tokenize(line_, tokens_);
            if (!tokens_.empty()) return true;
        }
        return false;
    }

    bool fail(std::string& msg, const std::string& what) const {
        msg = name_ + ":" + std::to_string(line_no_) + ": " + what;
        return false;
    }

    bool read_tensor(case_data& c, std::string& msg) {
        if (tokens_.size() < 3)
            return fail(msg, "'tensor' needs at least: tensor <input|expect> <name> [dims...]");
        const std::string_view kind = tokens_[1];
        const bool is_input = kind == "input";
        if (!is_input && kind != "expect")
            return fail(msg, "tensor kind must be 'input' or 'expect', got '" + std::string(kind) + "'");
        tensor_data t;
        t.name = std::string(tokens_[2]);
        if (!is_identifier(t.name)) return fail(msg, "bad tensor name '" + t.name + "'");
        if ((is_input ? c.input(t.name) : c.expect(t.name)) != nullptr)
            return fail(msg, "duplicate tensor " + std::string(kind) + " '" + t.name + "'");
        if (!is_input && !c.error.empty())
            return fail(msg, "'error' and 'tensor expect' records are exclusive");

        // Guard against absurd sizes (and int64 overflow of the product). The product of the
        // non-zero dimensions is bounded too: an empty tensor [0, 2^62, 2] holds no value, but
        // the row-major strides a runner computes for it would still overflow.
        constexpr std::int64_t max_elements = std::int64_t{1} << 40;
        std::int64_t count = 1;
        std::int64_t nonzero_product = 1;
        for (std::size_t i = 3; i < tokens_.size(); ++i) {
            std::int64_t d = 0;
            if (!parse_int(tokens_[i], d) || d < 0)
                return fail(msg, "tensor '" + t.name + "': bad dimension '" + std::string(tokens_[i]) +
                                     "' (expected an integer >= 0)");
            t.shape.push_back(d);
            if (d != 0 && nonzero_product > max_elements / d)
                return fail(msg, "tensor '" + t.name + "': too many elements");
            if (d != 0) nonzero_product *= d;
            count *= d;
        }
        t.is_integer = is_input && is_integer_tensor_name(t.name);
        const std::size_t reserve = static_cast<std::size_t>(std::min<std::int64_t>(count, 1 << 20));
        if (t.is_integer)
            t.integer.reserve(reserve);
        else
            t.real.reserve(reserve);

        const std::size_t header_line = line_no_;
        std::int64_t got = 0;
        const auto expected_msg = [&] {
            return "tensor '" + t.name + "' (line " + std::to_string(header_line) + ") expects " +
                   std::to_string(count) + " value" + (count == 1 ? "" : "s") + ", got " + std::to_string(got);
        };
        while (got < count) {
            if (!next_record()) return fail(msg, "unexpected end of file: " + expected_msg());
            if (is_keyword(tokens_[0])) return fail(msg, expected_msg() + " before '" + std::string(tokens_[0]) + "'");
            if (static_cast<std::int64_t>(tokens_.size()) > count - got)
                return fail(msg, "too many values: " + expected_msg() + " + " + std::to_string(tokens_.size()) +
                                     " on this line");
            for (std::string_view tok : tokens_) {
                if (t.is_integer) {
                    std::int64_t v = 0;
                    if (!parse_int(tok, v))
                        return fail(msg, "tensor '" + t.name + "': bad integer '" + std::string(tok) + "'");
                    t.integer.push_back(v);
                } else {
                    double v = 0;
                    if (!parse_real(tok, v))
                        return fail(msg, "tensor '" + t.name + "': bad number '" + std::string(tok) + "'");
                    t.real.push_back(v);
                }
                ++got;
            }
        }
        (is_input ? c.inputs : c.expects).push_back(std::move(t));
        return true;
    }

    std::istream& in_;
    std::string name_;
    std::string line_;
    std::vector<std::string_view> tokens_;
    std::size_t line_no_ = 0;
    std::size_t end_line_ = 0;
};

}  // namespace detail

// Parses one case from `in`. `out.path` (if set by the caller) names the
// source in error messages ("<input>" when empty) and is kept; every other
// field of `out` is replaced. On failure `out` is left unchanged and
// `error_message` is "<file>:<line>: <problem>".
inline bool parse_case(std::istream& in, case_data& out, std::string& error_message) {
    case_data c;
    c.path = out.path;
    detail::parser p(in, c.path.empty() ? std::string("<input>") : c.path);
    if (!p.run(c, error_message)) return false;
    out = std::move(c);
    error_message.clear();
    return true;
}

inline bool load_case(const std::filesystem::path& path, case_data& out, std::string& error_message) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error_message = path.string() + ": cannot open file";
        return false;
    }
    case_data c;
    c.path = path.string();
    if (!parse_case(in, c, error_message)) return false;
    out = std::move(c);
    return true;
}

// Each entry of `paths` is a `.case` file or a directory searched recursively
// for `*.case` files. Returns the files sorted and without duplicates; on
// error (a path that does not exist, a non-`.case` file, an unreadable
// directory) returns an empty vector and sets `error` (cleared on success).
inline std::vector<std::filesystem::path> collect_case_files(const std::vector<std::string>& paths,
                                                             std::string& error) {
    namespace fs = std::filesystem;
    std::vector<fs::path> files;
    error.clear();
    for (const std::string& p : paths) {
        std::error_code ec;
        const fs::path root(p);
        const fs::file_status st = fs::status(root, ec);
        if (ec || !fs::exists(st)) {
            error = p + ": no such file or directory";
            return {};
        }
        if (fs::is_directory(st)) {
            fs::recursive_directory_iterator it(root, fs::directory_options::follow_directory_symlink, ec);
            if (ec) {
                error = p + ": cannot read directory: " + ec.message();
                return {};
            }
            for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
                if (ec) break;
                std::error_code ec2;
                if (it->path().extension() == ".case" && it->is_regular_file(ec2) && !ec2)
                    files.push_back(it->path());
            }
            if (ec) {
                error = p + ": cannot read directory: " + ec.message();
                return {};
            }
        } else if (root.extension() == ".case") {
            files.push_back(root);
        } else {
            error = p + ": not a .case file or a directory";
            return {};
        }
    }
    std::sort(files.begin(), files.end());
    files.erase(std::unique(files.begin(), files.end()), files.end());
    return files;
}

}  // namespace distill_conformance
