// distill/schemes/generations.hpp: sequential teacher-student schemes, where each trained model
// teaches the next one.
//
// Born-again networks: T. Furlanello, Z. C. Lipton, M. Tschannen, L. Itti, A. Anandkumar,
// "Born-Again Neural Networks", ICML 2018 (arXiv:1805.04770). Generation 0 is trained from the
// labels alone; generation g >= 1, of the same architecture, is trained with generation g - 1
// as its teacher. The paper's final model is the last generation, or the ensemble of all of
// them (BAN-E), so the owning form returns every generation.
//
// Teacher assistant: S. I. Mirzadeh, M. Farajtabar, A. Li, N. Levine, A. Matsukawa,
// H. Ghasemzadeh, "Improved Knowledge Distillation via Teacher Assistant", AAAI 2020
// (arXiv:1902.03393). A trained teacher teaches an intermediate-size assistant, which teaches
// the next, ..., which teaches the student: teacher -> a_1 -> ... -> a_m -> student, closing
// the capacity gap one step at a time.
//
// Both are drivers around the user's training step, which knows the models, the data and the
// loss (e.g. distill::kd + distill::ce on each batch):
//
//     train(std::size_t index, Student& student, const Teacher* teacher)
//
// Ordering (documented and tested): steps run strictly in index order 0, 1, 2, ...; step s is
// called once, after step s - 1 has returned, with the model trained by step s - 1 as its
// teacher (born_again: null at generation 0; teacher_assistant_chain: the given teacher at step
// 0). The teacher is passed as a const pointer and is never modified. Models are constructed
// right before their step (owning forms) or by the caller beforehand (range forms).
//
// A callback that returns a distill::status stops a range form at the first failure, which
// that form returns (later models are left untouched); any other return value is ignored.
// The owning forms need callbacks that return no status (use a range form to stop early).
//
// Generic, header-only, exception-neutral: nothing is caught; an exception from a callback or a
// factory propagates, and the models built so far are destroyed normally. No heap use beyond the
// models themselves: the range forms allocate nothing, born_again's owning form reserves its
// vector once before the loop, and teacher_assistant_chain's owning form returns a std::tuple.
#pragma once

#include <concepts>
#include <cstddef>
#include <functional>
#include <iterator>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/status.hpp"

namespace distill {

/// A training step of a chain: callable as train(index, student, teacher) with a const teacher
/// pointer (null for the first born-again generation).
template <class F, class Student, class Teacher>
concept chain_trainer = std::invocable<F&, std::size_t, Student&, const Teacher*>;

/// A model factory: make(index) or make().
template <class F>
concept model_factory = std::invocable<F&, std::size_t> || std::invocable<F&>;

namespace detail {

template <class F>
decltype(auto) make_model_at(F& make, std::size_t index) {
    if constexpr (std::invocable<F&, std::size_t>) return std::invoke(make, index);
    else return std::invoke(make);
}
template <class F>
using made_model_t = std::remove_cvref_t<decltype(make_model_at(std::declval<F&>(), std::size_t{}))>;

template <class F, class Student, class Teacher>
constexpr bool step_returns_status =
    std::is_same_v<std::remove_cvref_t<std::invoke_result_t<F&, std::size_t, Student&, const Teacher*>>, status>;

/// Runs one step; a returned status is passed on, anything else counts as success.
template <class F, class Student, class Teacher>
status train_step(F& train, std::size_t index, Student& student, const Teacher* teacher) {
    if constexpr (step_returns_status<F, Student, Teacher>) {
        return std::invoke(train, index, student, teacher);
    } else {
        std::invoke(train, index, student, teacher);
        return {};
    }
}

/// Steps index, index + 1, ... over the models of [first, last), the first taught by `teacher`.
template <class Teacher, class It, class S, class F>
status run_chain(const Teacher* teacher, It first, S last, F& train) {
    using M = std::iter_value_t<It>;
    const M* previous = nullptr;
    std::size_t index = 0;
    for (; first != last; ++first, ++index) {
        M& student = *first;
        status s = index == 0 ? train_step(train, index, student, teacher) : train_step(train, index, student, previous);
        if (!s) return s;
        previous = std::addressof(student);
    }
    return {};
}

template <class Train, class Previous>
std::tuple<> chain_models(std::size_t, const Previous&, Train&) {
    return {};
}
/// Builds and trains the model of `make` taught by `teacher`, then the rest taught by it.
template <class Train, class Previous, class Make, class... Rest>
auto chain_models(std::size_t index, const Previous& teacher, Train& train, Make& make, Rest&... rest) {
    using M = made_model_t<Make>;
    static_assert(chain_trainer<Train, M, Previous>,
                  "teacher_assistant_chain: train(index, model, teacher) must accept every model of the chain "
                  "with the previous one as a const pointer");
    static_assert(!step_returns_status<Train, M, Previous>,
                  "teacher_assistant_chain: this form cannot stop early; a callback that returns a status needs the "
                  "range form teacher_assistant_chain(teacher, models, train)");
    M model = make_model_at(make, index);
    std::invoke(train, index, model, std::addressof(teacher));
    auto tail = chain_models(index + 1, model, train, rest...);  // trains the later models before `model` moves
    return std::tuple_cat(std::tuple<M>(std::move(model)), std::move(tail));
}

}  // namespace detail

/// Born-again generations over models the caller built (all of one type): for g = 0, 1, ...,
/// train(g, models[g], g == 0 ? nullptr : &models[g - 1]). Allocates nothing. Returns the
/// first failed status a callback returned (later generations untouched), else ok.
template <std::ranges::forward_range R, class Train>
    requires chain_trainer<Train, std::ranges::range_value_t<R>, std::ranges::range_value_t<R>>
status born_again(R&& models, Train&& train) {
    using M = std::ranges::range_value_t<R>;
    return detail::run_chain(static_cast<const M*>(nullptr), std::ranges::begin(models), std::ranges::end(models), train);
}

/// Born-again generations built by make_model(g) (or make_model()) right before generation g is
/// trained; returns all of them (the last is the final student, all together form BAN-E).
/// One allocation (the vector's reserve) before the loop.
template <model_factory Make, class Train>
    requires chain_trainer<Train, detail::made_model_t<Make>, detail::made_model_t<Make>>
std::vector<detail::made_model_t<Make>> born_again(std::size_t generations, Make&& make_model, Train&& train) {
    using M = detail::made_model_t<Make>;
    static_assert(!detail::step_returns_status<Train, M, M>,
                  "born_again: this form cannot stop early; a callback that returns a status needs the range form "
                  "born_again(models, train)");
    std::vector<M> models;
    models.reserve(generations);  // addresses stay valid: each generation teaches the next
    for (std::size_t g = 0; g < generations; ++g) {
        models.push_back(detail::make_model_at(make_model, g));
        std::invoke(train, g, models.back(), g == 0 ? static_cast<const M*>(nullptr) : &models[g - 1]);
    }
    return models;
}

/// Teacher-assistant chain over models the caller built (assistants in order, the student
/// last; one type, e.g. MLPs of decreasing width): train(0, chain[0], &teacher), then
/// train(s, chain[s], &chain[s - 1]). Allocates nothing. Returns the first failed status a
/// callback returned (later models untouched), else ok.
template <class Teacher, std::ranges::forward_range R, class Train>
    requires chain_trainer<Train, std::ranges::range_value_t<R>, Teacher> &&
             chain_trainer<Train, std::ranges::range_value_t<R>, std::ranges::range_value_t<R>>
status teacher_assistant_chain(const Teacher& teacher, R&& chain, Train&& train) {
    return detail::run_chain(std::addressof(teacher), std::ranges::begin(chain), std::ranges::end(chain), train);
}

/// Teacher-assistant chain over models of any types: make_models... build the assistants and,
/// last, the student, each right before its step; model s is taught by model s - 1 (model 0 by
/// `teacher`). Returns std::tuple of every trained model (std::get<sizeof...(make_models) - 1>
/// is the student).
template <class Teacher, class Train, model_factory... Make>
    requires(sizeof...(Make) >= 1 && !std::ranges::range<std::remove_cvref_t<Train>>)
auto teacher_assistant_chain(const Teacher& teacher, Train&& train, Make&&... make_models) {
    return detail::chain_models(0, teacher, train, make_models...);
}

}  // namespace distill
