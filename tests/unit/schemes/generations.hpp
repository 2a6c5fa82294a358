// tests/unit/schemes/generations.hpp: born-again generations and the teacher-assistant chain
// (include/distill/schemes/generations.hpp); included by schemes_test.cpp. A mock training step
// records every call: the order, the student, and the teacher it was given.
#pragma once

#include <distill/schemes/generations.hpp>

#include <array>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace generations_test {

/// A model that knows its name and which teacher trained it; counts live instances.
struct model {
    static inline int live = 0;
    std::string name;
    std::string taught_by = "untrained";
    explicit model(std::string n) : name(std::move(n)) { ++live; }
    model(const model& o) : name(o.name), taught_by(o.taught_by) { ++live; }
    model(model&& o) noexcept : name(std::move(o.name)), taught_by(std::move(o.taught_by)) { ++live; }
    model& operator=(const model&) = default;
    model& operator=(model&&) = default;
    ~model() { --live; }
};
/// Other model types for the heterogeneous chain.
struct wide : model {
    using model::model;
};
struct narrow : model {
    using model::model;
};

/// The recorded calls: "make <index>" and "train <index> <student> <- <teacher or none>".
struct recorder {
    std::vector<std::string> log;
    template <class S, class Teacher>
    void train(std::size_t index, S& student, const Teacher* teacher) {
        const std::string from = teacher ? teacher->name : std::string("none");
        if (teacher) CHECK(teacher->taught_by != "untrained");  // a teacher is trained before it teaches
        log.push_back("train " + std::to_string(index) + " " + student.name + " <- " + from);
        student.taught_by = from;
    }
};

}  // namespace generations_test

TEST_CASE("born_again: generations in order, each taught by the previous one") {
    using namespace generations_test;
    recorder rec;
    const auto train = [&](std::size_t g, model& student, const model* teacher) { rec.train(g, student, teacher); };
    const auto make = [&](std::size_t g) {
        rec.log.push_back("make " + std::to_string(g));
        return model("gen" + std::to_string(g));
    };
    {
        const std::vector<model> gens = distill::born_again(3, make, train);
        REQUIRE(gens.size() == 3);
        CHECK(rec.log == std::vector<std::string>{"make 0", "train 0 gen0 <- none", "make 1", "train 1 gen1 <- gen0", "make 2",
                                                  "train 2 gen2 <- gen1"});
        CHECK(gens[0].taught_by == "none");
        CHECK(gens[2].taught_by == "gen1");
        CHECK(model::live == 3);
    }
    CHECK(model::live == 0);
    // Zero generations: nothing is made or trained.
    rec.log.clear();
    CHECK(distill::born_again(0, make, train).empty());
    CHECK(rec.log.empty());
    // Range form over models the caller built: nothing allocated by the driver, same order.
    std::array<model, 3> built{model("a"), model("b"), model("c")};
    const distill::status s = distill::born_again(built, train);
    CHECK(s.ok());
    CHECK(rec.log == std::vector<std::string>{"train 0 a <- none", "train 1 b <- a", "train 2 c <- b"});
    // A nullary factory works too.
    rec.log.clear();
    const auto gens = distill::born_again(2, [] { return model("m"); }, train);
    CHECK(rec.log == std::vector<std::string>{"train 0 m <- none", "train 1 m <- m"});
    CHECK(gens.size() == 2);
}

TEST_CASE("born_again and teacher_assistant_chain: a failed status stops the range forms") {
    using namespace generations_test;
    recorder rec;
    std::vector<model> built{model("a"), model("b"), model("c"), model("d")};
    const auto train = [&](std::size_t g, model& student, const model* teacher) -> distill::status {
        rec.train(g, student, teacher);
        if (g == 1) return distill::status::error(distill::errc::invalid_parameter, "train").text("diverged");
        return {};
    };
    const distill::status s = distill::born_again(built, train);
    CHECK_FALSE(s.ok());
    CHECK(std::string(s.message()) == "diverged");
    CHECK(rec.log == std::vector<std::string>{"train 0 a <- none", "train 1 b <- a"});
    CHECK(built[2].taught_by == "untrained");
    rec.log.clear();
    model teacher("T");
    teacher.taught_by = "labels";
    const distill::status t = distill::teacher_assistant_chain(teacher, built, train);
    CHECK_FALSE(t.ok());
    CHECK(rec.log == std::vector<std::string>{"train 0 a <- T", "train 1 b <- a"});
}

TEST_CASE("teacher_assistant_chain: teacher -> assistants -> student, in order") {
    using namespace generations_test;
    recorder rec;
    model teacher("teacher");
    teacher.taught_by = "labels";
    // Range form: the caller's assistants and student (one type).
    std::vector<model> chain{model("assistant1"), model("assistant2"), model("student")};
    const auto train = [&](std::size_t s, model& student, const model* t) { rec.train(s, student, t); };
    CHECK(distill::teacher_assistant_chain(teacher, chain, train).ok());
    CHECK(rec.log == std::vector<std::string>{"train 0 assistant1 <- teacher", "train 1 assistant2 <- assistant1",
                                              "train 2 student <- assistant2"});
    CHECK(teacher.taught_by == "labels");  // the teacher is never modified
    // Owning form over different model types, each built right before its step.
    rec.log.clear();
    const auto generic_train = [&](std::size_t s, auto& student, const auto* t) { rec.train(s, student, t); };
    {
        auto [assistant, student] = distill::teacher_assistant_chain(
            teacher, generic_train,
            [&] {
                rec.log.push_back("make wide");
                return wide("assistant");
            },
            [&](std::size_t s) {
                rec.log.push_back("make narrow " + std::to_string(s));
                return narrow("student");
            });
        static_assert(std::is_same_v<decltype(assistant), wide> && std::is_same_v<decltype(student), narrow>);
        CHECK(rec.log == std::vector<std::string>{"make wide", "train 0 assistant <- teacher", "make narrow 1",
                                                  "train 1 student <- assistant"});
        CHECK(student.taught_by == "assistant");
        CHECK(assistant.taught_by == "teacher");
    }
    CHECK(model::live == 4);  // teacher and the three of `chain`
    // The direct teacher -> student baseline is a chain of one.
    rec.log.clear();
    const auto direct = distill::teacher_assistant_chain(teacher, generic_train, [] { return narrow("student"); });
    CHECK(std::get<0>(direct).taught_by == "teacher");
    CHECK(rec.log == std::vector<std::string>{"train 0 student <- teacher"});
}

#if DISTILL_HAS_EXCEPTIONS
TEST_CASE("born_again and teacher_assistant_chain: exceptions pass through and the models are destroyed") {
    using namespace generations_test;
    const int before = model::live;
    const auto train = [](std::size_t g, model&, const model*) {
        if (g == 2) throw std::runtime_error("out of memory");
    };
    CHECK_THROWS_AS(distill::born_again(4, [](std::size_t) { return model("m"); }, train), std::runtime_error);
    CHECK(model::live == before);
    const model teacher("T");
    const auto generic = [](std::size_t s, auto&, const auto*) {
        if (s == 1) throw std::runtime_error("stop");
    };
    CHECK_THROWS_AS(distill::teacher_assistant_chain(teacher, generic, [] { return wide("a"); }, [] { return narrow("b"); },
                                                     [] { return narrow("c"); }),
                    std::runtime_error);
    CHECK(model::live == before + 1);
}
#endif
