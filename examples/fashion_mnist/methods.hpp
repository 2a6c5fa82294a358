// fashion_mnist/methods.hpp: the students' objectives, every loss computed by distill.
//
// Each method is cross-entropy on the labels plus one distillation term, as in the papers:
//
//   scratch   CE                                         (labels only)
//   kd        (1 - alpha) CE + alpha KD_T                Hinton et al. 2015
//   dkd       CE + warm-up * DKD(alpha, beta, T)         Zhao et al. 2022 (warm-up as in mdistiller)
//   dist      CE + DIST(beta, gamma, T)                  Huang et al. 2022
//   hint      CE + w MSE(regressor(h_s), h_t)            Romero et al. 2015 (a linear regressor, trained jointly)
//   rkd       CE + w RKD(h_s, h_t)                       Park et al. 2019 (distance 25, angle 50; groups of 32 rows)
//   sp        CE + w SP(h_s, h_t)                        Tung & Mori 2019
//   pkt       CE + w PKT(h_s, h_t)                       Passalis & Tefas 2018
//   cc        CE + w CC(h_s, h_t)                        Peng et al. 2019 (the paper's Gaussian kernel)
//
// h_s is the student's hidden layer (N x 128), h_t the teacher's last hidden layer (N x 1200):
// the relation methods compare N x N structures of the batch, so the widths may differ; hint maps
// h_s to 1200 with a linear regressor whose gradient this file back-propagates.
//
// Every loss goes through distill's allocation-free run step, distill::run(options, args,
// outputs, workspace), with caller-owned outputs and one scratch buffer per training job.
#pragma once

#include <distill/eigen.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlp.hpp"

namespace fmnist {

/// One training step's inputs to the objective. Rows whose label is -100 are unlabelled (the
/// transfer set): CE ignores them, the distillation terms use them.
struct batch {
    const matrix& logits;           ///< student logits, N x 10
    const matrix& hidden;           ///< student hidden layer, N x 128
    const matrix& teacher_logits;   ///< N x 10
    const matrix* teacher_features; ///< N x 1200, or null when no method needs them
    const label_vector& labels;     ///< class or -100
    const label_vector& targets;    ///< class, or the teacher's prediction for unlabelled rows (dkd needs one)
    float progress;                 ///< fraction of training done, in [0, 1)
};

/// Where the objective writes d loss / d logits and d loss / d hidden (both start at zero).
struct gradients {
    matrix logits, hidden;
};

/// Calls distill's run step into caller-owned outputs and adds weight * gradient to `grad`.
class loss_engine {
public:
    /// Hard-label cross-entropy (distill::ce).
    float ce(const matrix& logits, const label_vector& labels, float weight, matrix& grad) {
        auto args = distill::make_response_args(logits, logits, labels);
        args.teacher = {};  // ce has no teacher
        return response(distill::ce_float_options{}, args, weight, grad);
    }
    /// A response method (kd, dkd, dist) on logits; labels may be distill::none.
    template <class Options, class Labels>
    float response(const Options& options, const matrix& student, const matrix& teacher, const Labels& labels,
                   float weight, matrix& grad) {
        return response(options, distill::make_response_args(student, teacher, labels), weight, grad);
    }
    /// A feature or relation method (hint, rkd, sp, pkt, cc). Student, teacher and grad may be
    /// blocks of rows (distill views them in place).
    template <class Options, class Student, class Teacher, class Grad>
    float feature(const Options& options, const Student& student, const Teacher& teacher, float weight, Grad&& grad) {
        const distill::feature_args<float> args{distill::as_view(student), distill::as_view(teacher)};
        term_grad_.resize(student.rows(), student.cols());
        const distill::feature_outputs<float> outs{distill::make_view(&value_, 1), distill::as_view(term_grad_)};
        check(distill::run(options, args, outs, workspace(distill::workspace_bytes(options, args, outs))));
        grad += weight * term_grad_;
        return weight * value_;
    }

private:
    template <class Options, class Args>
    float response(const Options& options, const Args& args, float weight, matrix& grad) {
        term_grad_.resize(args.student.extent(0), args.student.extent(1));
        const distill::response_outputs<float> outs{distill::make_view(&value_, 1), distill::as_view(term_grad_)};
        check(distill::run(options, args, outs, workspace(distill::workspace_bytes(options, args, outs))));
        grad.noalias() += weight * term_grad_;
        return weight * value_;
    }
    distill::workspace workspace(std::size_t bytes) {
        if (scratch_.size() * sizeof(float) < bytes) scratch_.resize((bytes + sizeof(float) - 1) / sizeof(float));
        return {scratch_.data(), bytes};
    }
    static void check(const distill::status& s) {
        if (!s) throw std::runtime_error(s.message());
    }
    std::vector<float> scratch_;
    matrix term_grad_;
    float value_ = 0;
};

/// hint's regressor: r = h_s W + b (128 -> 1200), trained with the student.
struct regressor {
    linear map;
    matrix out, grad_out, grad_in;
};

/// A method's parameters by name (e.g. "T", "alpha", "weight"), settable with --param.
using parameters = std::map<std::string, float>;

struct method {
    std::string name;
    std::string paper;
    parameters params;
    bool needs_features = false;  ///< uses the teacher's hidden layer
    bool needs_regressor = false; ///< hint
    /// Adds the objective's gradients to `g` and returns its value.
    std::function<float(const method&, loss_engine&, const batch&, gradients&, regressor*)> objective;
    float cost = 1;  ///< relative cost of a run: the costliest runs start first

    [[nodiscard]] float operator[](const std::string& key) const { return params.at(key); }
    /// "T=2 alpha=0.5": the settings, for the table.
    [[nodiscard]] std::string settings() const {
        std::string s;
        for (const auto& [key, value] : params) {
            char text[64];
            std::snprintf(text, sizeof text, "%s%s=%g", s.empty() ? "" : " ", key.c_str(), double(value));
            s += text;
        }
        return s;
    }
};

/// A relation method: CE + weight * loss(h_s, h_t). With a "group" parameter smaller than the
/// batch, the relation loss is the mean over consecutive groups of that many rows (the batch is
/// shuffled, so each group is a random sample): rkd's angle term costs N^3, and 64 is
/// RepDistiller's batch size, for which its weights were set.
template <class Options>
auto relation_objective(Options options) {
    return [options](const method& m, loss_engine& e, const batch& b, gradients& g, regressor*) {
        float loss = e.ce(b.logits, b.labels, 1.0f, g.logits);
        const Eigen::Index n = b.hidden.rows();
        const auto found = m.params.find("group");
        const Eigen::Index group = found == m.params.end() ? n : std::clamp<Eigen::Index>(Eigen::Index(found->second), 2, n);
        const Eigen::Index groups = n / group;  // a remainder of fewer than `group` rows is left out
        for (Eigen::Index k = 0; k < groups; ++k) {
            const Eigen::Index begin = k * group;
            loss += e.feature(options, b.hidden.middleRows(begin, group), b.teacher_features->middleRows(begin, group),
                              m["weight"] / float(groups), g.hidden.middleRows(begin, group));
        }
        return loss;
    };
}

/// Every method the demo knows, in table order. The parameters were tuned once, starting from the
/// papers' (or RepDistiller's / mdistiller's) values, by a small sweep with 3 seeds on this
/// demo's default setting; README.md of this directory lists the sweep. Changed from the
/// references: kd alpha 0.5 (Hinton's 0.9 is as good here), dkd beta 2 (8 in mdistiller: +0.5
/// instead of +1.0), dist T 2, hint weight 10 (100 in RepDistiller), sp 1000 (3000), pkt 1e5
/// (3e4), cc 1000 (the paper's kernel form, whose values are small), rkd on groups of 32 rows.
inline std::vector<method> all_methods() {
    std::vector<method> methods;
    methods.push_back({"scratch", "labels only", {}, false, false,
                       [](const method&, loss_engine& e, const batch& b, gradients& g, regressor*) {
                           return e.ce(b.logits, b.labels, 1.0f, g.logits);
                       }});
    methods.push_back({"kd", "Hinton et al. 2015", {{"T", 2.0f}, {"alpha", 0.5f}}, false, false,
                       [](const method& m, loss_engine& e, const batch& b, gradients& g, regressor*) {
                           const float alpha = m["alpha"];
                           return e.ce(b.logits, b.labels, 1.0f - alpha, g.logits) +
                                  e.response(distill::kd_float_options{.temperature = m["T"]}, b.logits, b.teacher_logits,
                                             distill::none, alpha, g.logits);
                       }});
    methods.push_back({"dkd", "Zhao et al. 2022", {{"T", 4.0f}, {"alpha", 1.0f}, {"beta", 2.0f}, {"warmup", 0.2f}}, false, false,
                       [](const method& m, loss_engine& e, const batch& b, gradients& g, regressor*) {
                           // mdistiller ramps the DKD term up linearly over its first 20 of 240 epochs.
                           const float ramp = m["warmup"] > 0 ? std::min(1.0f, b.progress / m["warmup"]) : 1.0f;
                           const distill::dkd_float_options o{.temperature = m["T"], .alpha = m["alpha"], .beta = m["beta"]};
                           return e.ce(b.logits, b.labels, 1.0f, g.logits) +
                                  e.response(o, b.logits, b.teacher_logits, b.targets, ramp, g.logits);
                       }});
    methods.push_back({"dist", "Huang et al. 2022", {{"T", 2.0f}, {"beta", 1.0f}, {"gamma", 1.0f}}, false, false,
                       [](const method& m, loss_engine& e, const batch& b, gradients& g, regressor*) {
                           const distill::dist_float_options o{.temperature = m["T"], .beta = m["beta"], .gamma = m["gamma"]};
                           return e.ce(b.logits, b.labels, 1.0f, g.logits) +
                                  e.response(o, b.logits, b.teacher_logits, distill::none, 1.0f, g.logits);
                       }});
    methods.push_back({"hint", "Romero et al. 2015", {{"weight", 10.0f}}, true, true,
                       [](const method& m, loss_engine& e, const batch& b, gradients& g, regressor* r) {
                           // r = h_s W + b; d loss/d r from distill, then through the regressor by hand:
                           // dW = h_sᵀ dr, db = Σ_rows dr, d h_s += dr Wᵀ.
                           r->map.forward(b.hidden, r->out);
                           r->grad_out.setZero(r->out.rows(), r->out.cols());
                           const float loss = e.ce(b.logits, b.labels, 1.0f, g.logits) +
                                              e.feature(distill::hint_float_options{}, r->out, *b.teacher_features,
                                                        m["weight"], r->grad_out);
                           r->map.backward(b.hidden, r->grad_out, &r->grad_in);
                           g.hidden += r->grad_in;
                           return loss;
                       }});
    methods.push_back({"rkd", "Park et al. 2019", {{"weight", 1.0f}, {"group", 32.0f}}, true, false,
                       relation_objective(distill::rkd_float_options{})});
    methods.back().cost = 10;  // the angle term: O(N^3) per group
    methods.push_back({"sp", "Tung & Mori 2019", {{"weight", 1000.0f}}, true, false,
                       relation_objective(distill::sp_float_options{})});
    methods.push_back({"pkt", "Passalis & Tefas 2018", {{"weight", 100000.0f}}, true, false,
                       relation_objective(distill::pkt_float_options{})});
    methods.push_back({"cc", "Peng et al. 2019", {{"weight", 1000.0f}}, true, false,
                       relation_objective(distill::cc_float_options{})});
    return methods;
}

}  // namespace fmnist
