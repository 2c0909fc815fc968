// Hugging Face -> GGUF conversion against llama.cpp's own output, CODI merges, adapters both ways,
// and the readers' refusals (hostile pickles, truncated or inconsistent files). No Node needed.
// Usage: test_convert [shared_dir]   (default ../shared or $LRO_SHARED)
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "convert/common.h"
#include "convert/convert_hf.h"
#include "convert/json.h"
#include "convert/lora_convert.h"
#include "convert/safetensors.h"
#include "convert/torch_checkpoint.h"
#include "convert/zip_reader.h"
#include "core/gguf.h"
#include "golden.h"
#include "model/latent_head.h"
#include "model/llama_model.h"
#include "model/lora_adapter.h"

namespace {

using namespace lro;
using namespace lro::convert;

int failures = 0;
void check(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

// Runs f and checks that it throws with a message containing every needle.
void expect_error(const std::string& what, const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
  } catch (const std::exception& e) {
    std::string msg = e.what();
    bool all = true;
    for (const auto& n : needles) all &= msg.find(n) != std::string::npos;
    check(all, what + " -> " + msg);
    return;
  }
  check(false, what + " (no error)");
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
bool same_file(const std::string& a, const std::string& b) { return read_bytes(a) == read_bytes(b); }

// Compares tensor tables (names, types, shapes, bytes), ignoring order.
bool same_tensors(const GgufFile& a, const GgufFile& b, std::string& why) {
  if (a.tensors().size() != b.tensors().size()) {
    why = std::to_string(a.tensors().size()) + " vs " + std::to_string(b.tensors().size()) + " tensors";
    return false;
  }
  for (const auto& t : a.tensors()) {
    const GgufTensorInfo* u = b.find_tensor(t.name);
    if (!u || u->type != t.type || std::memcmp(u->ne, t.ne, sizeof t.ne) != 0 || u->nbytes != t.nbytes ||
        std::memcmp(u->data, t.data, t.nbytes) != 0) {
      why = "tensor " + t.name + " differs";
      return false;
    }
  }
  return true;
}

// A stored (uncompressed) zip, as torch.save writes one.
std::vector<uint8_t> make_zip(const std::vector<std::pair<std::string, std::string>>& entries) {
  std::vector<uint8_t> z, cd;
  auto u16 = [](std::vector<uint8_t>& v, uint32_t x) { v.push_back(x & 0xFF), v.push_back((x >> 8) & 0xFF); };
  auto u32 = [&](std::vector<uint8_t>& v, uint32_t x) { u16(v, x & 0xFFFF), u16(v, x >> 16); };
  for (const auto& e : entries) {
    uint32_t off = static_cast<uint32_t>(z.size());
    uint32_t crc = crc32(reinterpret_cast<const uint8_t*>(e.second.data()), e.second.size());
    u32(z, 0x04034b50), u16(z, 20), u16(z, 0), u16(z, 0), u16(z, 0), u16(z, 0), u32(z, crc);
    u32(z, static_cast<uint32_t>(e.second.size())), u32(z, static_cast<uint32_t>(e.second.size()));
    u16(z, static_cast<uint32_t>(e.first.size())), u16(z, 0);
    z.insert(z.end(), e.first.begin(), e.first.end());
    z.insert(z.end(), e.second.begin(), e.second.end());
    u32(cd, 0x02014b50), u16(cd, 20), u16(cd, 20), u16(cd, 0), u16(cd, 0), u16(cd, 0), u16(cd, 0), u32(cd, crc);
    u32(cd, static_cast<uint32_t>(e.second.size())), u32(cd, static_cast<uint32_t>(e.second.size()));
    u16(cd, static_cast<uint32_t>(e.first.size())), u16(cd, 0), u16(cd, 0), u16(cd, 0), u16(cd, 0), u32(cd, 0), u32(cd, off);
    cd.insert(cd.end(), e.first.begin(), e.first.end());
  }
  uint32_t cd_off = static_cast<uint32_t>(z.size());
  z.insert(z.end(), cd.begin(), cd.end());
  u32(z, 0x06054b50), u16(z, 0), u16(z, 0), u16(z, static_cast<uint32_t>(entries.size())), u16(z, static_cast<uint32_t>(entries.size()));
  u32(z, static_cast<uint32_t>(cd.size())), u32(z, cd_off), u16(z, 0);
  return z;
}

std::string X(const std::string& s) {  // pickle BINUNICODE
  std::string b = "X";
  uint32_t n = static_cast<uint32_t>(s.size());
  b.append(reinterpret_cast<const char*>(&n), 4);
  return b + s;
}
const std::string kOd = "ccollections\nOrderedDict\n)R";
std::string persid(const std::string& key, int numel) {
  return "(" + X("storage") + "ctorch\nFloatStorage\n" + X(key) + X("cpu") + "K" + std::string(1, static_cast<char>(numel)) + "tQ";
}
std::string K(int v) { return "K" + std::string(1, static_cast<char>(v)); }

}  // namespace

// A section that throws counts as one failure instead of ending the run.
void section(const std::string& name, const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    check(false, name + ": unexpected error: " + e.what());
  }
}

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::string shared = argc > 1 ? argv[1] : golden::shared_dir();
  // Absolute: the test links to golden files from a temporary folder.
  if (char* abs = realpath(shared.c_str(), nullptr)) {
    shared = abs;
    std::free(abs);
  }
  const std::string hf = shared + "/golden/hf", gg = shared + "/golden/gguf";
  char tmpl[] = "/tmp/lro-convert-XXXXXX";
  const std::string tmp = mkdtemp(tmpl);

  // --- tiny-llama3 -> GGUF as llama.cpp's converter wrote it
  section("tiny-llama3", [&] {
    HfConvertOptions o;
    auto s = convert_hf(hf + "/tiny-llama3", tmp + "/t.f32.gguf", o);
    check(same_file(tmp + "/t.f32.gguf", gg + "/tiny-l3.f32.gguf"), "tiny-llama3 --type f32 is byte-identical to tiny-l3.f32.gguf");
    check(s.n_tensors == 39 && s.tied && s.n_vocab == 2003 && s.tokenizer_size == 2000 && s.pre == "llama-bpe", "f32 summary");
    // The same weights as two shards with model.safetensors.index.json.
    const std::string sh = tmp + "/sharded";
    make_directories(sh);
    for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
      write_text_file(sh + "/" + f, read_text_file(hf + "/tiny-llama3/" + f));
    auto whole = SafetensorsFile::open(hf + "/tiny-llama3/model.safetensors");
    std::vector<SafetensorsOut> parts[2];
    json::Value wm = json::Value::make_object();
    const auto& all = whole->tensors();
    for (size_t i = 0; i < all.size(); ++i) {
      SafetensorsOut o;
      o.name = all[i].name;
      o.shape = all[i].shape;
      o.bytes.assign(all[i].base, all[i].base + all[i].numel() * 4);
      const int part = i < all.size() / 2 ? 0 : 1;
      wm.set(o.name, json::Value::make_string(part ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors"));
      parts[part].push_back(std::move(o));
    }
    write_safetensors(sh + "/model-00001-of-00002.safetensors", parts[0], {{"format", "pt"}});
    write_safetensors(sh + "/model-00002-of-00002.safetensors", parts[1], {{"format", "pt"}});
    json::Value idx = json::Value::make_object();
    idx.set("weight_map", wm);
    write_text_file(sh + "/model.safetensors.index.json", json::dump(idx, 2));
    auto ss = convert_hf(sh, tmp + "/sharded.gguf", HfConvertOptions());
    std::string why;
    auto sa = GgufFile::open(tmp + "/sharded.gguf"), sb = GgufFile::open(gg + "/tiny-l3.f32.gguf");
    check(ss.source_files.size() == 2 && same_tensors(*sa, *sb, why), "sharded safetensors + index.json convert to the same tensors " + why);
    wm.set("model.norm.weight", json::Value::make_string("model-00001-of-00002.safetensors"));
    idx.set("weight_map", wm);
    write_text_file(sh + "/model.safetensors.index.json", json::dump(idx, 2));
    expect_error("index naming the wrong shard", [&] { convert_hf(sh, tmp + "/x.gguf", HfConvertOptions()); },
                 {"model.safetensors.index.json", "model.norm.weight"});
    // Merges in the older "a b" string form give the same vocabulary metadata.
    {
      const std::string d = tmp + "/string-merges";
      make_directories(d);
      for (const char* f : {"config.json", "tokenizer_config.json"}) write_text_file(d + "/" + f, read_text_file(hf + "/tiny-llama3/" + f));
      if (symlink((hf + "/tiny-llama3/model.safetensors").c_str(), (d + "/model.safetensors").c_str()) != 0) throw std::runtime_error("symlink");
      json::Value tj = json::parse_file(hf + "/tiny-llama3/tokenizer.json");
      json::Value* merges = nullptr;
      for (auto& m : tj.members)
        if (m.first == "model")
          for (auto& mm : m.second.members)
            if (mm.first == "merges") merges = &mm.second;
      for (auto& m : merges->items) m = json::Value::make_string(m.items[0].str + " " + m.items[1].str);
      write_text_file(d + "/tokenizer.json", json::dump(tj));
      convert_hf(d, tmp + "/string-merges.gguf", HfConvertOptions());
      auto a = GgufFile::open(tmp + "/string-merges.gguf"), b = GgufFile::open(gg + "/tiny-l3.f32.gguf");
      bool same = true;
      for (const char* k : {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"}) {
        const auto &x = a->get(k).arr, &y = b->get(k).arr;
        same &= x.size() == y.size();
        for (size_t i = 0; same && i < x.size(); ++i) same &= x[i].str == y[i].str && x[i].num.i64 == y[i].num.i64;
      }
      check(same, "string-form merges give the same tokens, types and merges");
    }
    for (const char* t : {"f16", "bf16", "q8_0"}) {
      HfConvertOptions ot;
      ot.type = t;
      convert_hf(hf + "/tiny-llama3", tmp + "/t." + t + ".gguf", ot);
      auto a = GgufFile::open(tmp + "/t." + t + ".gguf");
      auto b = GgufFile::open(gg + "/tiny-l3." + t + ".gguf");
      std::string why;
      check(same_tensors(*a, *b, why), std::string("--type ") + t + " tensors equal llama-quantize's tiny-l3." + t + ".gguf " + why);
    }
  });

  // --- CODI: LoRA merged, projection to the sidecar; both checkpoint formats agree
  section("codi", [&] {
    std::vector<std::string> outs;
    for (const char* w : {"pytorch_model.bin", "model.safetensors"}) {
      HfConvertOptions o;
      o.weights = w;
      const std::string out = tmp + "/codi." + w + ".gguf";
      auto s = convert_hf(hf + "/codi-tiny", out, o);
      check(s.codi && s.lora_merged == 28 && s.lora_rank == 16 && s.lora_alpha == 8 && s.lora_alpha_source == "README.json",
            std::string("codi-tiny ") + w + ": 28 LoRA merges, r 16, alpha 8 from README.json");
      check(s.latent_out == tmp + "/codi." + w + ".latent.gguf", "sidecar default path");
      auto head = LatentHead::load(s.latent_out, 256);
      const auto& st = head->settings();
      check(st.mode == "codi" && st.steps == 6 && st.bot_id == 2001 && st.eot_id == 2002 && st.pad_id == 2000 &&
                st.prompt_format == "codi-answer-only" && st.exclude_ids == std::vector<int32_t>({2000, 2001, 2002}) &&
                head->hidden() == 256 && std::fabs(st.ln_eps - 1e-5f) < 1e-12f,
            std::string("sidecar loads via LatentHead::load (") + w + ")");
      outs.push_back(out);
    }
    auto a = GgufFile::open(outs[0]), b = GgufFile::open(outs[1]);
    std::string why;
    check(same_tensors(*a, *b, why), "pytorch_model.bin (bf16) and model.safetensors (f32) give identical merged GGUFs " + why);
    check(same_file(tmp + "/codi.pytorch_model.bin.latent.gguf", tmp + "/codi.model.safetensors.latent.gguf"), "identical sidecars");
    const auto& toks = a->get("tokenizer.ggml.tokens").arr;
    const auto& types = a->get("tokenizer.ggml.token_type").arr;
    check(toks.size() == 2003 && toks[2000].str == "<|pad|>" && toks[2001].str == "<|bot|>" && toks[2002].str == "<|eot_latent|>" &&
              types[2001].as_int("") == 3,
          "CODI rows named <|pad|> <|bot|> <|eot_latent|> (CONTROL)");

    // Independent reference: W + (alpha/r) B A in double, rounded once, rows permuted per head.
    golden::SafetensorsFile src(hf + "/codi-tiny/model.safetensors");
    const std::string pre = "codi.base_model.model.model.layers.1.self_attn.k_proj.";
    auto W = src.at(pre + "base_layer.weight").f32(), A = src.at(pre + "lora_A.default.weight").f32(), B = src.at(pre + "lora_B.default.weight").f32();
    const int64_t rows = 128, cols = 256, r = 16, hd = 64;
    std::vector<float> ref(W.size());
    for (int64_t o = 0; o < rows; ++o)
      for (int64_t i = 0; i < cols; ++i) {
        double acc = 0;
        for (int64_t k = 0; k < r; ++k) acc += static_cast<double>(B[o * r + k]) * A[k * cols + i];
        int64_t h = o / hd, within = o % hd, s = within / (hd / 2), j = within % (hd / 2);
        ref[(h * hd + 2 * j + s) * cols + i] = static_cast<float>(W[o * cols + i] + 0.5 * acc);
      }
    const GgufTensorInfo* k = a->find_tensor("blk.1.attn_k.weight");
    check(k && k->nbytes == ref.size() * 4 && std::memcmp(k->data, ref.data(), k->nbytes) == 0,
          "merged blk.1.attn_k equals the double-precision reference (permuted)");
    try {
      auto m = LlamaModel::load(outs[0]);
      check(m->hparams().n_vocab == 2003, "the merged CODI GGUF loads as a model");
    } catch (const std::exception& e) {
      check(false, std::string("the merged CODI GGUF loads as a model: ") + e.what());
    }
    expect_error("CODI without any alpha source names the known value", [&] {
      // A copy of the folder without README.json.
      const std::string d = tmp + "/codi-noreadme";
      make_directories(d);
      for (const char* f : {"base_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
        if (symlink((hf + "/codi-tiny/" + f).c_str(), (d + "/" + f).c_str()) != 0) throw std::runtime_error("symlink failed");
      convert_hf(d, tmp + "/x.gguf", HfConvertOptions());
    }, {"alpha", "--lora-alpha", "r 128, alpha 32"});
    {
      HfConvertOptions o;
      o.lora_alpha = 8;
      auto s = convert_hf(tmp + "/codi-noreadme", tmp + "/codi.opt.gguf", o);
      auto c = GgufFile::open(tmp + "/codi.opt.gguf");
      std::string why2;
      check(s.lora_alpha_source == "option" && same_tensors(*a, *c, why2), "--lora-alpha 8 gives the same merge " + why2);
    }
    {
      HfConvertOptions o;
      o.latent = "coconut";
      o.weights = "model.safetensors";
      auto s = convert_hf(hf + "/codi-tiny", tmp + "/coco.gguf", o);
      auto head = LatentHead::load(s.latent_out, 256);
      auto f = GgufFile::open(s.latent_out);
      check(head->settings().mode == "coconut" && f->tensors().empty(), "--latent coconut writes a tensor-free sidecar");
    }
  });

  // --- adapters: PEFT -> GGUF equals llama.cpp's convert_lora_to_gguf; PEFT -> GGUF -> PEFT bit-exact
  section("adapters", [&] {
    AdapterConvertOptions o;
    auto s = convert_adapter(hf + "/tiny-llama3-lora", tmp + "/lora.gguf", o);
    auto a = GgufFile::open(tmp + "/lora.gguf"), b = GgufFile::open(gg + "/tiny-l3.lora-r8.f32.gguf");
    std::string why;
    check(same_tensors(*a, *b, why) && s.n_pairs == 28 && s.n_permuted == 8 && a->get_float("adapter.lora.alpha", 0) == 16,
          "tiny-llama3-lora -> GGUF tensors equal tiny-l3.lora-r8.f32.gguf " + why);
    convert_adapter(hf + "/oracle-lora-adapter", tmp + "/oracle.gguf", o);
    convert_adapter(tmp + "/oracle.gguf", tmp + "/oracle-peft", o);
    check(same_file(tmp + "/oracle-peft/adapter_model.safetensors", hf + "/oracle-lora-adapter/adapter_model.safetensors"),
          "oracle-lora-adapter PEFT -> GGUF -> PEFT: adapter_model.safetensors byte-identical");
    json::Value c = json::parse_file(tmp + "/oracle-peft/adapter_config.json");
    check(c.find("r")->integer == 8 && c.find("lora_alpha")->integer == 16 && c.find("target_modules")->items.size() == 7 &&
              !c.find("use_rslora")->boolean,
          "round-tripped adapter_config.json: r 8, alpha 16, 7 targets");
    expect_error("GGUF adapter without head counts asks for the base config",
                 [&] { convert_adapter(gg + "/tiny-l3.lora-r8.f32.gguf", tmp + "/nohead", o); }, {"head counts", "base"});
    AdapterConvertOptions ob;
    ob.base_config = gg + "/tiny-l3.f32.gguf";
    convert_adapter(gg + "/tiny-l3.lora-r8.f32.gguf", tmp + "/golden-peft", ob);
    check(same_file(tmp + "/golden-peft/adapter_model.safetensors", hf + "/tiny-llama3-lora/adapter_model.safetensors"),
          "llama.cpp's LoRA GGUF -> PEFT (heads from the model GGUF) equals the PEFT original");
    try {
      auto model = LlamaModel::load(gg + "/tiny-l3.f32.gguf");
      auto ad = LoraAdapter::load(tmp + "/lora.gguf", *model);
      check(ad->pairs().size() == 28 && ad->alpha() == 16, "converted adapter loads via LoraAdapter::load");
    } catch (const std::exception& e) {
      check(false, std::string("converted adapter loads: ") + e.what());
    }
    // rsLoRA: scale folded into alpha, and restored on the way back.
    const std::string rs = tmp + "/rs-adapter";
    make_directories(rs);
    std::string cfg = read_text_file(hf + "/oracle-lora-adapter/adapter_config.json");
    cfg.replace(cfg.find("\"use_rslora\": false"), 19, "\"use_rslora\": true");
    write_text_file(rs + "/adapter_config.json", cfg);
    if (symlink((hf + "/oracle-lora-adapter/adapter_model.safetensors").c_str(), (rs + "/adapter_model.safetensors").c_str()) != 0)
      check(false, "symlink for the rsLoRA case");
    AdapterConvertOptions ors;
    ors.base_config = hf + "/tiny-llama3/config.json";
    auto s3 = convert_adapter(rs, tmp + "/rs.gguf", ors);
    auto f3 = GgufFile::open(tmp + "/rs.gguf");
    check(s3.rslora && std::fabs(f3->get_float("adapter.lora.alpha", 0) - 16 * std::sqrt(8.0)) < 1e-4 && !s3.warnings.empty(),
          "rsLoRA: adapter.lora.alpha = alpha * sqrt(r), with a warning saying so");
    convert_adapter(tmp + "/rs.gguf", tmp + "/rs-peft", o);
    json::Value c3 = json::parse_file(tmp + "/rs-peft/adapter_config.json");
    check(c3.find("use_rslora")->boolean && c3.find("lora_alpha")->integer == 16, "rsLoRA restored on the way back");
  });

  // --- restricted unpickler and zip reader
  section("unpickler", [&] {
    // Two views of one 6-float storage: a transposed 2x3 (strides 1, 2) and a strided 1-D slice.
    const std::string rb = "ctorch._utils\n_rebuild_tensor_v2\n";
    std::string pk = "\x80\x02" + kOd + "(" + X("w") + rb + "(" + persid("0", 6) + K(0) + K(2) + K(3) + "\x86" + K(1) + K(2) + "\x86" +
                     "\x89" + kOd + "tR" + X("v") + rb + "(" + persid("0", 6) + K(1) + K(2) + "\x85" + K(3) + "\x85" + "\x89" + kOd +
                     "tR" + "u.";
    std::string data(24, '\0');
    for (int i = 0; i < 6; ++i) {
      float f = static_cast<float>(i);
      std::memcpy(&data[static_cast<size_t>(i) * 4], &f, 4);
    }
    write_bytes(tmp + "/views.bin", make_zip({{"archive/data.pkl", pk}, {"archive/byteorder", "little"}, {"archive/data/0", data}}));
    auto ck = TorchCheckpoint::open(tmp + "/views.bin");
    const auto& ts = ck->tensors();
    check(ts.size() == 2 && ts[0].to_f32() == std::vector<float>({0, 2, 4, 1, 3, 5}) && ts[1].to_f32() == std::vector<float>({1, 4}) &&
              ts[0].storage_key == ts[1].storage_key,
          "non-contiguous views of a shared storage are gathered by stride");

    std::string evil = "\x80\x02" + kOd + "(" + X("w") + "cos\nsystem\n" + X("echo pwned") + "\x85R" + "u.";
    expect_error("pickle naming os.system is refused", [&] { unpickle_state_dict(reinterpret_cast<const uint8_t*>(evil.data()), evil.size(), "evil.pkl"); },
                 {"refusing global 'os.system'", "nothing from this file was executed"});
    write_bytes(tmp + "/evil.bin", make_zip({{"archive/data.pkl", evil}, {"archive/data/0", data}}));
    expect_error("os.system inside a torch zip is refused", [&] { TorchCheckpoint::open(tmp + "/evil.bin"); }, {"os.system", "evil.bin"});
    std::string evil4 = std::string("\x80\x04\x8c\x08" "builtins" "\x8c\x04" "eval" "\x93\x8c\x0b" "print(\"hi\")" "\x85R.", 35);
    expect_error("STACK_GLOBAL builtins.eval is refused",
                 [&] { unpickle_state_dict(reinterpret_cast<const uint8_t*>(evil4.data()), evil4.size(), "evil4.pkl"); }, {"builtins.eval"});
    std::string inst = "\x80\x02(" + X("ls") + "ios\nsystem\n.";
    expect_error("INST opcode is refused", [&] { unpickle_state_dict(reinterpret_cast<const uint8_t*>(inst.data()), inst.size(), "inst.pkl"); },
                 {"os.system"});

    auto bin = read_bytes(hf + "/codi-tiny/pytorch_model.bin");
    write_bytes(tmp + "/trunc.bin", std::vector<uint8_t>(bin.begin(), bin.begin() + static_cast<long>(bin.size() / 2)));
    expect_error("truncated torch zip", [&] { TorchCheckpoint::open(tmp + "/trunc.bin"); }, {"trunc.bin", "end-of-central-directory", "truncated"});
    auto bad_crc = bin;
    bad_crc[bin.size() / 2] ^= 0x40;  // inside a storage
    write_bytes(tmp + "/crc.bin", bad_crc);
    expect_error("corrupt torch zip entry fails its CRC", [&] { TorchCheckpoint::open(tmp + "/crc.bin"); }, {"CRC-32"});
  });

  // --- safetensors validation
  section("safetensors", [&] {
    auto st = read_bytes(hf + "/tiny-llama3/model.safetensors");
    write_bytes(tmp + "/trunc.safetensors", std::vector<uint8_t>(st.begin(), st.end() - 1000));
    expect_error("truncated safetensors", [&] { SafetensorsFile::open(tmp + "/trunc.safetensors"); },
                 {"trunc.safetensors", "model.norm.weight", "past the end"});
    write_bytes(tmp + "/short.safetensors", std::vector<uint8_t>(st.begin(), st.begin() + 100));
    expect_error("safetensors cut inside its header", [&] { SafetensorsFile::open(tmp + "/short.safetensors"); }, {"header length", "truncated"});
    auto make = [&](const std::string& header, size_t data_bytes) {
      std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
      uint64_t n = header.size();
      std::memcpy(b.data(), &n, 8);
      std::memcpy(b.data() + 8, header.data(), header.size());
      return b;
    };
    write_bytes(tmp + "/shape.safetensors", make(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 12));
    expect_error("shape inconsistent with byte length", [&] { SafetensorsFile::open(tmp + "/shape.safetensors"); }, {"'a'", "16 bytes", "span 12"});
    write_bytes(tmp + "/gap.safetensors",
                make(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12));
    expect_error("offsets with a gap", [&] { SafetensorsFile::open(tmp + "/gap.safetensors"); }, {"'b'", "gap"});
    write_bytes(tmp + "/dtype.safetensors", make(R"({"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4));
    expect_error("unknown dtype", [&] { SafetensorsFile::open(tmp + "/dtype.safetensors"); }, {"unknown dtype 'F33'"});
    write_bytes(tmp + "/i64.safetensors", make(R"({"a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8));
    expect_error("integer tensors are not converted", [&] { SafetensorsFile::open(tmp + "/i64.safetensors")->tensors()[0].to_f32(); },
                 {"'a'", "I64", "not supported"});
    write_bytes(tmp + "/json.safetensors", make(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})", 4));
    expect_error("header JSON cut short", [&] { SafetensorsFile::open(tmp + "/json.safetensors"); }, {"invalid JSON", "line 1"});
  });
  std::error_code ec;
  std::filesystem::remove_all(tmp, ec);
  std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
