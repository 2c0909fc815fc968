#include "convert/common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

namespace lro {
namespace convert {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ConvertError(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw ConvertError(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw ConvertError(path + ": not a regular file");
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw ConvertError(path + ": cannot map: " + std::strerror(e));
    }
    m->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return m;
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConvertError(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw ConvertError(path + ": read failed");
  return ss.str();
}

void write_file_atomically(const std::string& path, const std::function<bool(FILE*)>& write) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw ConvertError(tmp + ": cannot create: " + std::strerror(errno));
  bool ok = write(f);
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    throw ConvertError(tmp + ": write failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw ConvertError(path + ": cannot rename from " + tmp + ": " + std::strerror(e));
  }
}

void write_text_file(const std::string& path, const std::string& text) {
  write_file_atomically(path, [&](FILE* f) { return text.empty() || std::fwrite(text.data(), 1, text.size(), f) == text.size(); });
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> list_directory(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) throw ConvertError(dir + ": cannot list directory: " + std::strerror(errno));
  std::vector<std::string> out;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string path_join(const std::string& a, const std::string& b) {
  if (a.empty() || (!b.empty() && b[0] == '/')) return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string path_basename(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  size_t k = s.rfind('/');
  return k == std::string::npos ? s : s.substr(k + 1);
}

std::string path_dirname(const std::string& p) {
  std::string s = p;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  size_t k = s.rfind('/');
  if (k == std::string::npos) return ".";
  return k == 0 ? "/" : s.substr(0, k);
}

void make_directories(const std::string& dir) {
  if (dir.empty() || is_directory(dir)) return;
  std::string parent = path_dirname(dir);
  if (parent != dir && parent != "." && parent != "/") make_directories(parent);
  if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST)
    throw ConvertError(dir + ": cannot create directory: " + std::strerror(errno));
}

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  if (a < 0 || b < 0) throw ConvertError(what + ": negative size");
  if (a != 0 && b > std::numeric_limits<int64_t>::max() / a) throw ConvertError(what + ": size overflows 64 bits");
  return a * b;
}

}  // namespace convert
}  // namespace lro
