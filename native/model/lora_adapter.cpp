#include "model/lora_adapter.h"
#include "quant/quants.h"

namespace lro {

std::shared_ptr<LoraAdapter> LoraAdapter::load(const std::string& path, const LlamaModel& model) {
  auto ad = std::make_shared<LoraAdapter>();
  ad->file_ = GgufFile::open(path);
  const GgufFile& f = *ad->file_;
  std::string type = f.get_string("general.type", "");
  if (type != "adapter")
    throw GgufError(path + ": general.type is '" + type + "', expected 'adapter' (a LoRA adapter GGUF)");
  std::string atype = f.get_string("adapter.type", "");
  if (atype != "lora") throw GgufError(path + ": adapter.type is '" + atype + "', expected 'lora'");
  std::string arch = f.get_string("general.architecture", "");
  if (arch != model.hparams().arch)
    throw GgufError(path + ": adapter is for architecture '" + arch + "', the model is '" + model.hparams().arch + "'");
  ad->alpha_ = static_cast<float>(f.get_float("adapter.lora.alpha", 0.0));

  std::map<std::string, const Weight*> base;
  if (!model.tied_output()) base["output.weight"] = &model.output();
  for (const auto& L : model.layers())
    for (const Weight* w : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) base[w->name] = w;

  for (const auto& t : f.tensors()) {
    const std::string& n = t.name;
    bool is_a = n.size() > 7 && n.compare(n.size() - 7, 7, ".lora_a") == 0;
    bool is_b = n.size() > 7 && n.compare(n.size() - 7, 7, ".lora_b") == 0;
    if (!is_a && !is_b) throw GgufError(path + ": tensor '" + n + "' is neither <weight>.lora_a nor <weight>.lora_b");
    std::string wname = n.substr(0, n.size() - 7);
    auto it = base.find(wname);
    if (it == base.end()) throw GgufError(path + ": tensor '" + n + "' names no matrix of the model ('" + wname + "')");
    if (t.n_dims != 2) throw GgufError(path + ": tensor '" + n + "' must be 2-D");
    if (!traits(t.type).supported) throw GgufError(path + ": tensor '" + n + "' has an unsupported type");
    require_finite(path, t);
    LoraPair& p = ad->pairs_[wname];
    Weight w{n, t.type, t.data, t.ne[0], t.ne[1]};
    (is_a ? p.a : p.b) = w;
  }
  for (auto& kv : ad->pairs_) {
    const Weight& bw = *base[kv.first];
    LoraPair& p = kv.second;
    if (!p.a.data || !p.b.data) throw GgufError(path + ": '" + kv.first + "' has only one of lora_a / lora_b");
    p.rank = p.a.n_out;
    if (p.a.n_in != bw.n_in || p.b.n_out != bw.n_out || p.b.n_in != p.rank)
      throw GgufError(path + ": '" + kv.first + "' lora_a ne [" + std::to_string(p.a.n_in) + ", " + std::to_string(p.a.n_out) +
                      "] / lora_b ne [" + std::to_string(p.b.n_in) + ", " + std::to_string(p.b.n_out) +
                      "] do not fit the base weight ne [" + std::to_string(bw.n_in) + ", " + std::to_string(bw.n_out) + "]");
  }
  return ad;
}

const LoraPair* LoraAdapter::find(const std::string& weight_name) const {
  auto it = pairs_.find(weight_name);
  return it == pairs_.end() ? nullptr : &it->second;
}

}  // namespace lro
