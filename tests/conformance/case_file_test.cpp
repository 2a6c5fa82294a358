// Tests for case_file.hpp (the `.case` reader). Linked with a doctest main
// elsewhere; standalone: compile with -DDOCTEST_CONFIG_IMPLEMENT_WITH_MAIN.
#include "case_file.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#ifndef DISTILL_CONFORMANCE_CASES_DIR
#define DISTILL_CONFORMANCE_CASES_DIR "/work/shared/conformance/cases"
#endif

namespace dc = distill_conformance;

namespace {

bool parse_text(const std::string& text, dc::case_data& out, std::string& err) {
    std::istringstream in(text);
    return dc::parse_case(in, out, err);
}

// Parses `text`, expecting failure; returns the error message.
std::string parse_error(const std::string& text) {
    dc::case_data c;
    std::string err;
    const bool ok = parse_text(text, c, err);
    CHECK_MESSAGE(!ok, "unexpectedly parsed:\n" << text);
    CHECK(!err.empty());
    return err;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

const char* const good_case = R"(# leading comment
  # indented comment

distill-case 1   # version
method kd        # the method
param temperature 2
param reduction none
tensor input student 2 3
0 1.5
  -2.25e-3
NaN inf
-INF
tensor input labels 2   # integer tensor
1 -100
tensor input teacher.index 1 2
7 +3
tensor input alpha
0.29999999999999999
tensor expect loss 2
1.0296126584275647 nan
tensor expect grad.student 2 3
-0.70703581966371887 0.70703581966371898 0 0 0 -0
tolerance 1e-6 1e-8
end
# trailing comment

)";

}  // namespace

TEST_CASE("case_file: parse a well-formed case") {
    dc::case_data c;
    c.path = "inline.case";
    std::string err = "stale";
    REQUIRE_MESSAGE(parse_text(good_case, c, err), err);
    CHECK(err.empty());
    CHECK(c.path == "inline.case");
    CHECK(c.method == "kd");
    REQUIRE(c.params.size() == 2);
    REQUIRE(c.param("temperature") != nullptr);
    CHECK(*c.param("temperature") == "2");
    CHECK(*c.param("reduction") == "none");
    CHECK(c.param("missing") == nullptr);
    CHECK(c.error.empty());
    CHECK(c.has_tolerance);
    CHECK(c.rtol == 1e-6);
    CHECK(c.atol == 1e-8);

    REQUIRE(c.inputs.size() == 4);
    const dc::tensor_data* s = c.input("student");
    REQUIRE(s != nullptr);
    CHECK(!s->is_integer);
    CHECK(s->shape == std::vector<std::int64_t>{2, 3});
    CHECK(s->size() == 6);
    REQUIRE(s->real.size() == 6);
    CHECK(s->integer.empty());
    CHECK(s->real[0] == 0.0);
    CHECK(s->real[1] == 1.5);
    CHECK(s->real[2] == -2.25e-3);
    CHECK(std::isnan(s->real[3]));
    CHECK(s->real[4] == std::numeric_limits<double>::infinity());
    CHECK(s->real[5] == -std::numeric_limits<double>::infinity());

    const dc::tensor_data* l = c.input("labels");
    REQUIRE(l != nullptr);
    CHECK(l->is_integer);
    CHECK(l->real.empty());
    CHECK(l->integer == std::vector<std::int64_t>{1, -100});

    const dc::tensor_data* ix = c.input("teacher.index");
    REQUIRE(ix != nullptr);
    CHECK(ix->is_integer);
    CHECK(ix->integer == std::vector<std::int64_t>{7, 3});

    const dc::tensor_data* a = c.input("alpha");
    REQUIRE(a != nullptr);
    CHECK(a->shape.empty());
    CHECK(a->size() == 1);
    REQUIRE(a->real.size() == 1);
    CHECK(a->real[0] == 0.29999999999999999);

    REQUIRE(c.expects.size() == 2);
    const dc::tensor_data* loss = c.expect("loss");
    REQUIRE(loss != nullptr);
    CHECK(loss->real[0] == 1.0296126584275647);
    CHECK(std::isnan(loss->real[1]));
    const dc::tensor_data* g = c.expect("grad.student");
    REQUIRE(g != nullptr);
    CHECK(g->real[1] == 0.70703581966371898);
    CHECK(std::signbit(g->real[5]));
    CHECK(c.expect("student") == nullptr);
    CHECK(c.input("loss") == nullptr);
}

TEST_CASE("case_file: error case, defaults and integer naming rule") {
    dc::case_data c;
    std::string err;
    REQUIRE_MESSAGE(parse_text("distill-case 1\n"
                               "method ce\n"
                               "tensor input logits 1 2\n1 2\n"
                               "tensor input labels 1\n5\n"
                               "tensor input my_index 1\n0\n"
                               "tensor input index\n3\n"
                               "tensor input indexes 1\n3.5\n"
                               "error value\n"
                               "end\n",
                               c, err),
                    err);
    CHECK(c.error == "value");
    CHECK(c.expects.empty());
    CHECK(!c.has_tolerance);
    CHECK(c.rtol == 1e-7);
    CHECK(c.atol == 1e-9);
    CHECK(c.input("labels")->is_integer);
    CHECK(c.input("my_index")->is_integer);
    CHECK(c.input("index")->is_integer);
    CHECK(c.input("index")->integer == std::vector<std::int64_t>{3});
    CHECK(!c.input("indexes")->is_integer);
    CHECK(c.input("indexes")->real == std::vector<double>{3.5});

    CHECK(dc::is_integer_tensor_name("labels"));
    CHECK(dc::is_integer_tensor_name("teacher.index"));
    CHECK(dc::is_integer_tensor_name("gather_index"));
    CHECK(!dc::is_integer_tensor_name("label"));
    CHECK(!dc::is_integer_tensor_name("indexes"));
    CHECK(!dc::is_integer_tensor_name("student"));
}

TEST_CASE("case_file: zero-sized tensors and a failure keeps the output") {
    dc::case_data c;
    std::string err;
    REQUIRE_MESSAGE(parse_text("distill-case 1\nmethod sp\ntensor input student 0 3\n"
                               "tensor expect loss\n0\nend\n",
                               c, err),
                    err);
    CHECK(c.input("student")->size() == 0);
    CHECK(c.input("student")->real.empty());

    // A failed parse leaves `out` untouched.
    CHECK(!parse_text("distill-case 1\nmethod kd\n", c, err));
    CHECK(c.method == "sp");
}

TEST_CASE("case_file: malformed input is rejected with file and line") {
    const std::string head = "distill-case 1\nmethod kd\n";
    const std::string tail = "tensor expect loss\n1\nend\n";

    std::string e = parse_error("");
    CHECK(contains(e, "<input>:"));
    CHECK(contains(e, "distill-case"));

    e = parse_error("# only comments\n\n");
    CHECK(contains(e, "distill-case 1"));

    e = parse_error("method kd\ndistill-case 1\n" + tail);
    CHECK(contains(e, ":1:"));
    CHECK(contains(e, "first line"));

    e = parse_error("distill-case 2\nmethod kd\n" + tail);
    CHECK(contains(e, "version"));

    e = parse_error("distill-case 1 extra\nmethod kd\n" + tail);
    CHECK(contains(e, ":1:"));

    // missing end
    e = parse_error(head + "tensor expect loss\n1\n");
    CHECK(contains(e, "missing 'end'"));

    // unknown record, with its line number
    e = parse_error(head + "frobnicate 3\n" + tail);
    CHECK(contains(e, "<input>:3:"));
    CHECK(contains(e, "unknown record 'frobnicate'"));

    // too few values (next record arrives early)
    e = parse_error(head + "tensor input student 2 2\n1 2 3\n" + tail);
    CHECK(contains(e, ":5:"));
    CHECK(contains(e, "expects 4 values, got 3"));

    // too few values at end of file
    e = parse_error(head + "tensor input student 2 2\n1 2 3\n");
    CHECK(contains(e, "unexpected end of file"));

    // too many values on one line
    e = parse_error(head + "tensor input student 2\n1 2 3\n" + tail);
    CHECK(contains(e, ":4:"));
    CHECK(contains(e, "too many values"));

    // too many values on an extra line
    e = parse_error(head + "tensor input student 2\n1 2\n3\n" + tail);
    CHECK(contains(e, ":5:"));
    CHECK(contains(e, "too many values"));

    // scalar with two values
    e = parse_error(head + "tensor input alpha\n1 2\n" + tail);
    CHECK(contains(e, "too many values"));

    // bad numbers
    e = parse_error(head + "tensor input student 2\n1 abc\n" + tail);
    CHECK(contains(e, "bad number 'abc'"));
    CHECK(contains(e, ":4:"));
    CHECK(contains(parse_error(head + "tensor input s 1\n1.5x\n" + tail), "bad number"));
    CHECK(contains(parse_error(head + "tensor input s 1\n0x10\n" + tail), "bad number"));
    CHECK(contains(parse_error(head + "tensor input s 1\n1e400\n" + tail), "bad number"));
    CHECK(contains(parse_error(head + "tensor input s 1\n--1\n" + tail), "bad number"));
    CHECK(contains(parse_error(head + "tensor input s 1\nnanx\n" + tail), "bad number"));
    CHECK(contains(parse_error(head + "tensor input s 1\n.\n" + tail), "bad number"));
    CHECK(contains(parse_error(head + "tensor input labels 1\n1.5\n" + tail), "bad integer '1.5'"));
    CHECK(contains(parse_error(head + "tensor input labels 1\nnan\n" + tail), "bad integer"));
    CHECK(contains(parse_error(head + "tensor input labels 1\n99999999999999999999\n" + tail), "bad integer"));

    // bad dimensions / names / kinds
    CHECK(contains(parse_error(head + "tensor input s -1\n" + tail), "bad dimension"));
    CHECK(contains(parse_error(head + "tensor input s 1.5\n1\n" + tail), "bad dimension"));
    CHECK(contains(parse_error(head + "tensor input 2 3\n1 2 3\n" + tail), "bad tensor name"));
    CHECK(contains(parse_error(head + "tensor output s 1\n1\n" + tail), "input' or 'expect"));
    CHECK(contains(parse_error(head + "tensor input\n" + tail), "tensor"));
    CHECK(contains(parse_error(head + "tensor input s 1048576 1048576 1048576\n" + tail), "too many elements"));
    // an empty tensor whose other dimensions would overflow the row-major strides (fuzz finding)
    CHECK(contains(parse_error(head + "tensor input s 0 8198552921648689607 2\n" + tail), "too many elements"));

    // record arity and duplicates
    CHECK(contains(parse_error(head + "method kd\n" + tail), "duplicate 'method'"));
    CHECK(contains(parse_error("distill-case 1\nmethod\n" + tail), "method"));
    CHECK(contains(parse_error(head + "param t\n" + tail), "param"));
    CHECK(contains(parse_error(head + "param t 1 2\n" + tail), "param"));
    CHECK(contains(parse_error(head + "param t 1\nparam t 2\n" + tail), "duplicate parameter 't'"));
    CHECK(contains(parse_error(head + "tensor input s 1\n1\ntensor input s 1\n1\n" + tail), "duplicate tensor"));
    CHECK(contains(parse_error(head + "tolerance 1e-3\n" + tail), "tolerance"));
    CHECK(contains(parse_error(head + "tolerance -1 0\n" + tail), "rtol"));
    CHECK(contains(parse_error(head + "tolerance 1 nan\n" + tail), "atol"));
    CHECK(contains(parse_error(head + "tolerance 1 1\ntolerance 1 1\n" + tail), "duplicate 'tolerance'"));
    CHECK(contains(parse_error(head + "tensor expect loss\n1\nend now\n"), "'end' takes no arguments"));

    // error records
    CHECK(contains(parse_error(head + "error crash\nend\n"), "unknown error kind"));
    CHECK(contains(parse_error(head + "error shape\n" + tail), "exclusive"));
    CHECK(contains(parse_error(head + "tensor expect loss\n1\nerror shape\nend\n"), "exclusive"));
    CHECK(contains(parse_error(head + "error shape\nerror value\nend\n"), "duplicate 'error'"));

    // case-level checks
    CHECK(contains(parse_error("distill-case 1\n" + tail), "missing 'method'"));
    CHECK(contains(parse_error(head + "end\n"), "neither"));
    e = parse_error(head + tail + "method kd\n");
    CHECK(contains(e, "after 'end'"));
    CHECK(contains(e, ":6:"));
    CHECK(contains(parse_error(head + "distill-case 1\n" + tail), "first line"));

    // load_case names the file
    dc::case_data c;
    std::string err;
    CHECK(!dc::load_case("/nonexistent/dir/x.case", c, err));
    CHECK(contains(err, "/nonexistent/dir/x.case"));
}

TEST_CASE("case_file: error case alone parses") {
    dc::case_data c;
    std::string err;
    REQUIRE_MESSAGE(parse_text("distill-case 1\nmethod kd\nerror shape\nend\n", c, err), err);
    CHECK(c.error == "shape");
}

TEST_CASE("case_file: values_match") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    CHECK(dc::values_match(1.0, 1.0, 0, 0));
    CHECK(dc::values_match(0.0, -0.0, 0, 0));
    CHECK(dc::values_match(1.0 + 1e-8, 1.0, 1e-7, 0));
    CHECK(!dc::values_match(1.0 + 1e-6, 1.0, 1e-7, 1e-9));
    CHECK(dc::values_match(1e-10, 0.0, 1e-7, 1e-9));
    CHECK(!dc::values_match(1e-8, 0.0, 1e-7, 1e-9));
    CHECK(dc::values_match(-2.0, -2.0 - 1e-8, 1e-7, 0));  // rtol uses |want|
    CHECK(dc::values_match(nan, nan, 1e-7, 1e-9));
    CHECK(dc::values_match(-nan, nan, 1e-7, 1e-9));
    CHECK(!dc::values_match(0.0, nan, 1e-7, 1e-9));
    CHECK(!dc::values_match(nan, 0.0, 1e-7, 1e-9));
    CHECK(!dc::values_match(nan, 0.0, inf, inf));
    CHECK(dc::values_match(inf, inf, 0, 0));
    CHECK(dc::values_match(-inf, -inf, 0, 0));
    CHECK(!dc::values_match(-inf, inf, 1e-7, 1e-9));
    CHECK(!dc::values_match(inf, -inf, 1e-7, 1e-9));
    CHECK(!dc::values_match(1e308, inf, 1e-7, 1e-9));
    CHECK(!dc::values_match(inf, 1e308, 1e-7, 1e-9));
    CHECK(!dc::values_match(nan, inf, 1e-7, 1e-9));
    CHECK(!dc::values_match(inf, nan, 1e-7, 1e-9));
    CHECK(!dc::values_match(inf, 1.0, inf, inf));
}

TEST_CASE("case_file: collect_case_files") {
    std::string err;
    auto none = dc::collect_case_files({"/nonexistent/conformance/path"}, err);
    CHECK(none.empty());
    CHECK(contains(err, "/nonexistent/conformance/path"));

    auto empty = dc::collect_case_files({}, err);
    CHECK(empty.empty());
    CHECK(err.empty());
}

TEST_CASE("case_file: every shared conformance case parses") {
    namespace fs = std::filesystem;
    const fs::path dir = DISTILL_CONFORMANCE_CASES_DIR;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) {
        MESSAGE("conformance case directory " << dir.string() << " not found; skipping");
        return;
    }
    std::string err;
    const auto files = dc::collect_case_files({dir.string()}, err);
    REQUIRE_MESSAGE(err.empty(), err);
    REQUIRE(!files.empty());
    CHECK(std::is_sorted(files.begin(), files.end()));
    for (const auto& f : files) {
        CAPTURE(f.string());
        CHECK(f.extension() == ".case");
        dc::case_data c;
        REQUIRE_MESSAGE(dc::load_case(f, c, err), err);
        CHECK(c.path == f.string());
        CHECK(!c.method.empty());
        CHECK((c.error.empty() != c.expects.empty()));
        for (const auto* group : {&c.inputs, &c.expects}) {
            for (const auto& t : *group) {
                CAPTURE(t.name);
                const auto n = static_cast<std::size_t>(t.size());
                CHECK((t.is_integer ? t.integer.size() : t.real.size()) == n);
                CHECK((t.is_integer ? t.real.size() : t.integer.size()) == 0);
            }
        }
        if (const auto* labels = c.input("labels")) CHECK(labels->is_integer);
    }

    // A single file path works too, and duplicates collapse.
    const auto one = dc::collect_case_files({files.front().string(), files.front().string()}, err);
    CHECK(err.empty());
    CHECK(one.size() == 1);
}
