// fashion_mnist/idx.hpp: reads Fashion-MNIST from gzip-compressed IDX files.
//
// The Debian package dataset-fashion-mnist installs the four files of Zalando's release under
// /usr/share/datasets/fashion-mnist:
//
//   train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   60000 images / labels
//   t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    10000 images / labels
//
// IDX (LeCun's MNIST format): a big-endian magic number 0x000008DD (0x08 = unsigned bytes, DD =
// the number of dimensions), DD big-endian 32-bit extents, then the bytes in row-major order.
// Images are 28 x 28 bytes; labels are single bytes in 0..9.
#pragma once

#include <zlib.h>

#include <Eigen/Core>

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace fmnist {

using matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using labels_t = std::vector<int>;

/// The dataset is not where we looked: main() turns this into a message naming the path and the
/// package to install, and exit code 77 (ctest's "skipped").
struct missing_dataset : std::runtime_error {
    using std::runtime_error::runtime_error;
};

/// One split: N x 784 pixels scaled to [0, 1] and standardised with the training set's mean and
/// standard deviation (0.2860, 0.3530), and N labels.
struct split {
    matrix images;
    labels_t labels;
    [[nodiscard]] Eigen::Index size() const { return images.rows(); }
};

struct dataset {
    split train, test;
    std::string directory;
};

namespace detail {

/// Reads a whole gzip file into memory (gzread also accepts an uncompressed file).
inline std::vector<std::uint8_t> read_gzip(const std::filesystem::path& path) {
    gzFile file = gzopen(path.c_str(), "rb");
    if (file == nullptr) throw std::runtime_error("cannot open " + path.string());
    std::vector<std::uint8_t> bytes;
    std::uint8_t chunk[1 << 16];
    for (;;) {
        const int n = gzread(file, chunk, sizeof chunk);
        if (n < 0) {
            int code = 0;
            const std::string message = gzerror(file, &code);
            gzclose(file);
            throw std::runtime_error(path.string() + ": gzip error: " + message);
        }
        if (n == 0) break;
        bytes.insert(bytes.end(), chunk, chunk + n);
    }
    gzclose(file);
    return bytes;
}

inline std::uint32_t big_endian_u32(const std::uint8_t* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | std::uint32_t(p[3]);
}

/// Parses an IDX header of unsigned bytes with `rank` dimensions; returns the extents and checks
/// that the payload has exactly their product of bytes.
inline std::vector<std::uint32_t> idx_extents(const std::vector<std::uint8_t>& bytes, int rank,
                                              const std::filesystem::path& path) {
    const std::size_t header = 4 + 4 * std::size_t(rank);
    if (bytes.size() < header || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != rank)
        throw std::runtime_error(path.string() + ": not an IDX file of unsigned bytes with " + std::to_string(rank) +
                                 " dimensions");
    std::vector<std::uint32_t> extents(static_cast<std::size_t>(rank));
    std::size_t count = 1;
    for (int d = 0; d < rank; ++d) count *= extents[std::size_t(d)] = big_endian_u32(&bytes[4 + 4 * std::size_t(d)]);
    if (bytes.size() != header + count)
        throw std::runtime_error(path.string() + ": expected " + std::to_string(header + count) + " bytes, found " +
                                 std::to_string(bytes.size()));
    return extents;
}

inline split read_split(const std::filesystem::path& dir, const std::string& prefix) {
    const auto image_path = dir / (prefix + "-images-idx3-ubyte.gz");
    const auto label_path = dir / (prefix + "-labels-idx1-ubyte.gz");
    const auto image_bytes = read_gzip(image_path);
    const auto label_bytes = read_gzip(label_path);
    const auto image_extents = idx_extents(image_bytes, 3, image_path);
    const auto label_extents = idx_extents(label_bytes, 1, label_path);
    if (image_extents[0] != label_extents[0] || image_extents[1] != 28 || image_extents[2] != 28)
        throw std::runtime_error(dir.string() + ": " + prefix + " images and labels do not match (" +
                                 std::to_string(image_extents[0]) + " images of " + std::to_string(image_extents[1]) +
                                 " x " + std::to_string(image_extents[2]) + ", " + std::to_string(label_extents[0]) +
                                 " labels)");
    const Eigen::Index n = image_extents[0], pixels = 28 * 28;
    split s;
    s.images.resize(n, pixels);
    s.labels.resize(std::size_t(n));
    // Standardisation constants of the Fashion-MNIST training set (pixels in [0, 1]).
    constexpr float mean = 0.2860f, inv_std = 1.0f / 0.3530f;
    const std::uint8_t* pixel = image_bytes.data() + 16;
    for (Eigen::Index i = 0; i < n; ++i)
        for (Eigen::Index j = 0; j < pixels; ++j) s.images(i, j) = (float(*pixel++) / 255.0f - mean) * inv_std;
    for (Eigen::Index i = 0; i < n; ++i) {
        const int label = label_bytes[8 + std::size_t(i)];
        if (label > 9) throw std::runtime_error(label_path.string() + ": label " + std::to_string(label) + " is not in 0..9");
        s.labels[std::size_t(i)] = label;
    }
    return s;
}

}  // namespace detail

/// The four files' names, for messages.
inline const char* const file_names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

/// Loads both splits from `directory`; throws missing_dataset (naming the first missing file) when
/// a file is absent, std::runtime_error when one is unreadable or malformed.
inline dataset load(const std::filesystem::path& directory) {
    for (const char* name : file_names)
        if (!std::filesystem::exists(directory / name)) throw missing_dataset((directory / name).string());
    return {detail::read_split(directory, "train"), detail::read_split(directory, "t10k"), directory.string()};
}

/// The class names of Fashion-MNIST, in label order.
inline const char* const class_names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                            "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

}  // namespace fmnist
