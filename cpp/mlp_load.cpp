// mlp-load: the exported model in C++, without Python or the model's source.
//
// Usage (make cpp builds it and runs it on the artifacts):
//   mlp-load --images t10k-images-idx3-ubyte --labels t10k-labels-idx1-ubyte
//            --reference held_out_probs.idx [--json results.json] [--latency-rows 2000]
//            ARTIFACT...        (model.aoti.pt2: AOTInductor; anything else: TorchScript)
//
// For each artifact: load it (an AOTInductor package compiled for a CPU whose instructions this one
// lacks is refused before its code is loaded), classify every image at batch 1024, and print the
// accuracy, the argmax agreement and max |dp| against the Python parity gate's reference
// probabilities (held_out_probs.idx), the p50 latency of one image per call (input built outside
// the timed call) and the time to load it. Pixels become float32 as torchvision's ToTensor makes them: byte / 255.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/script.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr int64_t kBatch = 1024;   // rows per call when classifying the whole set
constexpr int kWarmupCalls = 50;   // untimed batch-1 calls before the latency is measured

struct Idx {
  std::vector<int64_t> shape;
  std::vector<char> payload;  // as stored: bytes, or big-endian float32
  int type = 0;               // 0x08 unsigned byte, 0x0D float32
};

Idx read_idx(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw std::runtime_error(path + ": cannot open");
  unsigned char magic[4];
  if (!file.read(reinterpret_cast<char*>(magic), 4) || magic[0] || magic[1])
    throw std::runtime_error(path + ": not an IDX file");
  Idx idx;
  idx.type = magic[2];
  int64_t count = 1;
  for (int d = 0; d < magic[3]; ++d) {
    unsigned char b[4];
    file.read(reinterpret_cast<char*>(b), 4);
    idx.shape.push_back((int64_t(b[0]) << 24) | (b[1] << 16) | (b[2] << 8) | b[3]);
    count *= idx.shape.back();
  }
  const int64_t bytes = count * (idx.type == 0x0D ? 4 : 1);
  idx.payload.resize(bytes);
  if (!file.read(idx.payload.data(), bytes) || file.peek() != EOF)
    throw std::runtime_error(path + ": payload does not match its header");
  return idx;
}

at::Tensor images_tensor(const Idx& idx, const std::vector<int64_t>& sample_shape) {
  auto bytes = torch::from_blob(const_cast<char*>(idx.payload.data()), {idx.shape[0], idx.shape[1] * idx.shape[2]},
                                torch::kUInt8);
  std::vector<int64_t> shape{idx.shape[0]};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  return (bytes.to(torch::kFloat32) / 255.0f).reshape(shape).contiguous();
}

at::Tensor float_tensor(const Idx& idx) {  // big-endian float32 -> native
  std::vector<float> values(idx.payload.size() / 4);
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t v;
    std::memcpy(&v, idx.payload.data() + 4 * i, 4);
    v = __builtin_bswap32(v);
    std::memcpy(&values[i], &v, 4);
  }
  return torch::from_blob(values.data(), idx.shape, torch::kFloat32).clone();
}

std::set<std::string> cpu_flags() {  // /proc/cpuinfo's first "flags" line
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("flags", 0) == 0) {
      std::istringstream words(line.substr(line.find(':') + 1));
      return {std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
    }
  }
  return {};
}

std::vector<int64_t> parse_shape(const std::string& text) {  // "1,28,28"
  std::vector<int64_t> shape;
  std::istringstream parts(text);
  for (std::string part; std::getline(parts, part, ',');) shape.push_back(std::stoll(part));
  return shape;
}

using Model = std::function<at::Tensor(const at::Tensor&)>;

// The package's code may use any instruction of the CPU that compiled it (-march=native): refuse
// it here if this CPU lacks one (export/aoti_package.py does the same in Python).
Model load_aoti(const std::string& path, std::vector<int64_t>& sample_shape) {
  auto metadata = torch::inductor::AOTIModelPackageLoader::load_metadata_from_package(path, "model");
  std::set<std::string> here = cpu_flags(), lacking;
  std::istringstream needed(metadata["cpu_isa_flags"]);
  for (std::string flag; needed >> flag;)
    if (!here.count(flag)) lacking.insert(flag);
  if (!lacking.empty())
    throw std::runtime_error(path + ": compiled for another CPU (" + metadata["cpu_model"] + ") with instructions this "
                             "CPU lacks (e.g. " + *lacking.begin() + "); run `make export` on this machine");
  sample_shape = parse_shape(metadata["input_shape"]);
  // Two compiled models (export/aoti_package.py): "model" for any batch, "batch1" for single rows.
  auto any_batch = std::make_shared<torch::inductor::AOTIModelPackageLoader>(path, "model");
  auto one_row = std::make_shared<torch::inductor::AOTIModelPackageLoader>(path, "batch1");
  return [any_batch, one_row](const at::Tensor& x) { return (x.size(0) == 1 ? one_row : any_batch)->run({x})[0]; };
}

Model load_torchscript(const std::string& path) {
  auto module = std::make_shared<torch::jit::Module>(torch::jit::load(path));
  module->eval();
  return [module](const at::Tensor& x) { return module->forward({x}).toTensor(); };
}

double p50_latency_us(const Model& model, const at::Tensor& images, int64_t rows) {
  std::vector<at::Tensor> singles;
  for (int64_t i = 0; i < rows; ++i) singles.push_back(images.narrow(0, i % images.size(0), 1).contiguous());
  for (int i = 0; i < kWarmupCalls; ++i) model(singles[i % rows]);
  std::vector<double> micros;
  for (const auto& single : singles) {
    auto start = std::chrono::steady_clock::now();
    model(single);
    micros.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(micros.begin(), micros.begin() + micros.size() / 2, micros.end());
  return micros[micros.size() / 2];
}

struct Inputs {  // the held-out set and what the Python gate computed on it
  Idx images;
  at::Tensor labels;     // int64, N
  at::Tensor reference;  // float32, N x classes: held_out_probs.idx
};

struct Result {
  std::string file, runtime;
  double accuracy = 0, max_abs = 0, p50_us = 0, load_ms = 0;
  int64_t agree = 0, rows = 0;
};

Result evaluate(const std::string& path, const Inputs& in, int64_t latency_rows) {
  Result r;
  r.file = path.substr(path.find_last_of('/') + 1);
  const bool is_aoti = path.size() > 9 && path.compare(path.size() - 9, 9, ".aoti.pt2") == 0;
  r.runtime = is_aoti ? "aoti" : "torchscript";
  std::vector<int64_t> sample_shape{1, in.images.shape[1], in.images.shape[2]};
  const auto load_start = std::chrono::steady_clock::now();
  const Model model = is_aoti ? load_aoti(path, sample_shape) : load_torchscript(path);
  r.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - load_start).count();
  const at::Tensor images = images_tensor(in.images, sample_shape);
  std::vector<at::Tensor> parts;
  for (int64_t start = 0; start < images.size(0); start += kBatch)
    parts.push_back(model(images.narrow(0, start, std::min(kBatch, images.size(0) - start))));
  const at::Tensor probs = torch::cat(parts), predicted = probs.argmax(1);
  r.rows = images.size(0);
  r.accuracy = predicted.eq(in.labels).to(torch::kDouble).mean().item<double>();
  r.agree = predicted.eq(in.reference.argmax(1)).sum().item<int64_t>();
  r.max_abs = (probs - in.reference).abs().max().item<double>();
  r.p50_us = p50_latency_us(model, images, latency_rows);
  return r;
}

void write_json(const std::string& path, const std::vector<Result>& results) {  // atomically: .partial, then rename
  std::ostringstream json;
  json << "{\"threads\": " << at::get_num_threads() << ", \"artifacts\": {";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    json << (i ? ", " : "") << "\"" << r.file << "\": {\"runtime\": \"" << r.runtime << "\", \"accuracy\": " << r.accuracy
         << ", \"agree\": " << r.agree << ", \"rows\": " << r.rows << ", \"max_abs\": " << r.max_abs
         << ", \"batch1_p50_us\": " << r.p50_us << ", \"load_ms\": " << r.load_ms << "}";
  }
  json << "}}\n";
  const std::string tmp = path + ".partial";
  std::ofstream(tmp) << json.str();
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
  std::map<std::string, std::string> options{{"--latency-rows", "2000"}, {"--json", ""}};
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) == 0 && i + 1 < argc) options[arg] = argv[++i];
    else models.push_back(arg);
  }
  if (!options.count("--images") || !options.count("--labels") || !options.count("--reference") || models.empty()) {
    std::cerr << "usage: mlp-load --images IDX --labels IDX --reference held_out_probs.idx [--json FILE] "
                 "[--latency-rows N] ARTIFACT...\n";
    return 2;
  }
  try {
    torch::NoGradGuard no_grad;
    Inputs in{read_idx(options["--images"]), {}, float_tensor(read_idx(options["--reference"]))};
    const Idx labels = read_idx(options["--labels"]);
    in.labels = torch::from_blob(const_cast<char*>(labels.payload.data()), {labels.shape[0]}, torch::kUInt8).to(torch::kLong);
    std::vector<Result> results;
    for (const std::string& path : models) {
      const Result r = evaluate(path, in, std::stoll(options["--latency-rows"]));
      std::printf("%s: %s, accuracy %.2f%%, agreement with the Python gate %lld/%lld, max |dp| %.1e, "
                  "batch-1 p50 %.1f us (%d threads), loaded in %.1f ms\n", path.c_str(),
                  r.runtime == "aoti" ? "AOTInductor" : "TorchScript", 100 * r.accuracy, static_cast<long long>(r.agree),
                  static_cast<long long>(r.rows), r.max_abs, r.p50_us, at::get_num_threads(), r.load_ms);
      results.push_back(r);
    }
    if (!options["--json"].empty()) write_json(options["--json"], results);
  } catch (const std::exception& err) {
    std::cerr << "mlp-load: " << err.what() << "\n";
    return 1;
  }
  return 0;
}
