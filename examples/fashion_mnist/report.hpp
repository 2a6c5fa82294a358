// fashion_mnist/report.hpp: what the demo shows: a progress bar (plain lines when stdout is not a
// terminal), the results table, the per-epoch CSV and an SVG plot of the learning curves.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace fmnist {

/// One epoch of one training run.
struct epoch_record {
    std::string method;  ///< "teacher" or a student method
    int seed = 0;
    int epoch = 0;       ///< 1-based
    double train_loss = 0;
    double test_accuracy = 0;  ///< in [0, 1]
    double seconds = 0;        ///< since the start of the run
};

/// Mean and sample standard deviation.
struct summary {
    double mean = 0, std = 0;
    int n = 0;
};
inline summary summarize(const std::vector<double>& v) {
    summary s;
    s.n = int(v.size());
    if (v.empty()) return s;
    for (double x : v) s.mean += x;
    s.mean /= double(v.size());
    if (v.size() > 1) {
        for (double x : v) s.std += (x - s.mean) * (x - s.mean);
        s.std = std::sqrt(s.std / double(v.size() - 1));
    }
    return s;
}

/// "1:05" or "12 s".
inline std::string format_duration(double seconds) {
    char text[32];
    if (seconds < 60) std::snprintf(text, sizeof text, "%.0f s", seconds);
    else std::snprintf(text, sizeof text, "%d:%02d", int(seconds) / 60, int(seconds) % 60);
    return text;
}

// ------------------------------------------------------------------ progress

/// Progress of a phase made of `total` units (epochs). On a terminal one line is redrawn in place
/// (bar, what runs, its epoch and loss, the ETA of the phase); otherwise only `note` lines are
/// printed. Thread-safe: training jobs report from several threads.
class progress {
public:
    progress() : tty_(isatty(STDOUT_FILENO) != 0) {}
    [[nodiscard]] bool tty() const { return tty_; }

    void start(std::string phase, long total) {
        std::lock_guard lock(mutex_);
        phase_ = std::move(phase);
        total_ = total;
        done_ = 0;
        last_draw_ = -1;
        start_ = std::chrono::steady_clock::now();
    }
    /// `units` more done; `what` describes the run ("kd seed 2 epoch 14/30 loss 0.412").
    void tick(const std::string& what, long units = 1) {
        std::lock_guard lock(mutex_);
        done_ += units;
        if (!tty_) return;
        const double elapsed = seconds_since(start_);
        if (done_ < total_ && elapsed - last_draw_ < 0.1) return;  // at most ten redraws a second
        last_draw_ = elapsed;
        const double eta = done_ > 0 ? elapsed * double(total_ - done_) / double(done_) : 0.0;
        constexpr int width = 24;
        const int filled = total_ > 0 ? int(width * done_ / total_) : width;
        std::string bar(std::size_t(filled), '#');
        bar.resize(width, '-');
        std::printf("\r\033[K%s [%s] %3d%% %s | ETA %s", phase_.c_str(), bar.c_str(), total_ > 0 ? int(100 * done_ / total_) : 100,
                    what.c_str(), format_duration(eta).c_str());
        std::fflush(stdout);
        line_open_ = true;
    }
    /// A line that stays (a run finished, the teacher's epoch on a non-terminal).
    void note(const std::string& line) {
        std::lock_guard lock(mutex_);
        if (line_open_) std::printf("\r\033[K");
        line_open_ = false;
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
    }
    void finish() {
        std::lock_guard lock(mutex_);
        if (line_open_) std::printf("\r\033[K");
        line_open_ = false;
        std::fflush(stdout);
    }
    [[nodiscard]] double elapsed() const { return seconds_since(start_); }

    static double seconds_since(std::chrono::steady_clock::time_point t) {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    }

private:
    bool tty_;
    bool line_open_ = false;
    std::mutex mutex_;
    std::string phase_;
    long total_ = 0, done_ = 0;
    double last_draw_ = -1;
    std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// ------------------------------------------------------------------ CSV

inline void write_csv(const std::string& path, const std::vector<epoch_record>& rows) {
    std::ofstream out(path);
    out << "method,seed,epoch,train_loss,test_accuracy,seconds\n";
    char line[256];
    for (const auto& r : rows) {
        std::snprintf(line, sizeof line, "%s,%d,%d,%.6f,%.4f,%.3f\n", r.method.c_str(), r.seed, r.epoch, r.train_loss,
                      100 * r.test_accuracy, r.seconds);
        out << line;
    }
    if (!out) throw std::runtime_error("cannot write " + path);
}

// ------------------------------------------------------------------ SVG plot

/// Test accuracy per epoch, averaged over seeds, one line per method (in `order`), the teacher's
/// accuracy as a dashed horizontal line. Hand-written SVG: no plotting dependency.
inline void write_svg(const std::string& path, const std::vector<epoch_record>& rows, const std::vector<std::string>& order,
                      double teacher_accuracy, const std::string& title) {
    // Mean curve per method.
    std::map<std::string, std::map<int, std::vector<double>>> by_method;
    for (const auto& r : rows)
        if (r.method != "teacher") by_method[r.method][r.epoch].push_back(100 * r.test_accuracy);
    std::map<std::string, std::vector<std::pair<int, double>>> curves;
    int max_epoch = 1;
    double lo = 100, hi = 0;
    for (const auto& [name, epochs] : by_method)
        for (const auto& [epoch, values] : epochs) {
            const double mean = summarize(values).mean;
            curves[name].push_back({epoch, mean});
            max_epoch = std::max(max_epoch, epoch);
            hi = std::max(hi, mean);
        }
    // The y range starts at the lowest mean accuracy after the first quarter of training, so
    // that the interesting end of the curves is not squashed by epoch 1.
    for (const auto& [name, points] : curves)
        for (const auto& [epoch, mean] : points)
            if (epoch > max_epoch / 4) lo = std::min(lo, mean);
    if (teacher_accuracy > 0) hi = std::max(hi, 100 * teacher_accuracy);
    if (lo > hi) lo = hi - 1;
    lo = std::floor(lo - 0.5), hi = std::ceil(hi + 0.5);

    const double W = 820, H = 480, left = 60, right = 150, top = 40, bottom = 50;
    const double pw = W - left - right, ph = H - top - bottom;
    auto x_of = [&](double epoch) { return left + pw * (max_epoch > 1 ? (epoch - 1) / (max_epoch - 1) : 0.5); };
    auto y_of = [&](double acc) { return top + ph * (1 - (acc - lo) / (hi - lo)); };  // clipped to the plot below
    static const char* colors[] = {"#000000", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

    std::ofstream out(path);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                  "<text x=\"%.0f\" y=\"22\" font-size=\"14\">%s</text>\n",
                  W, H, left, title.c_str());
    out << buf;
    // Grid and axes.
    const double step = (hi - lo) > 8 ? 2 : (hi - lo) > 4 ? 1 : 0.5;
    for (double y = lo; y <= hi + 1e-9; y += step) {
        std::snprintf(buf, sizeof buf,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n",
                      left, y_of(y), left + pw, y_of(y), left - 6, y_of(y) + 4, y);
        out << buf;
    }
    const int epoch_step = std::max(1, max_epoch / 10);
    for (int e = 1; e <= max_epoch; e += epoch_step) {
        std::snprintf(buf, sizeof buf, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x_of(e), top + ph + 18, e);
        out << buf;
    }
    std::snprintf(buf, sizeof buf,
                  "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#444\"/>\n"
                  "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">epoch</text>\n"
                  "<text transform=\"translate(16 %.1f) rotate(-90)\" text-anchor=\"middle\">test accuracy (%%), mean over seeds</text>\n",
                  left, top, pw, ph, left + pw / 2, H - 12, top + ph / 2);
    out << buf;
    // The teacher.
    double legend_y = top + 10;
    if (teacher_accuracy > 0) {
        std::snprintf(buf, sizeof buf,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"6 4\"/>\n"
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"6 4\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\">teacher %.2f</text>\n",
                      left, y_of(100 * teacher_accuracy), left + pw, y_of(100 * teacher_accuracy), left + pw + 10, legend_y,
                      left + pw + 34, legend_y, left + pw + 40, legend_y + 4, 100 * teacher_accuracy);
        out << buf;
        legend_y += 18;
    }
    // One polyline per method, clipped to the plot area (the first epochs fall below it).
    std::snprintf(buf, sizeof buf, "<clipPath id=\"plot\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/></clipPath>\n",
                  left, top, pw, ph);
    out << buf;
    int k = 0;
    for (const auto& name : order) {
        const auto it = curves.find(name);
        if (it == curves.end()) continue;
        const char* color = colors[k++ % 11];
        out << "<polyline clip-path=\"url(#plot)\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"" << (name == "scratch" ? 2.5 : 1.5)
            << "\" points=\"";
        for (const auto& [epoch, mean] : it->second) {
            std::snprintf(buf, sizeof buf, "%.1f,%.1f ", x_of(epoch), y_of(mean));
            out << buf;
        }
        out << "\"/>\n";
        std::snprintf(buf, sizeof buf,
                      "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2.5\"/>"
                      "<text x=\"%.1f\" y=\"%.1f\">%s %.2f</text>\n",
                      left + pw + 10, legend_y, left + pw + 34, legend_y, color, left + pw + 40, legend_y + 4, name.c_str(),
                      it->second.back().second);
        out << buf;
        legend_y += 18;
    }
    out << "</svg>\n";
    if (!out) throw std::runtime_error("cannot write " + path);
}

}  // namespace fmnist
