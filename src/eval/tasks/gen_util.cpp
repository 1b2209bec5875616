#include "eval/tasks/gen_util.h"

#include "core/hash.h"

namespace kvz {

namespace {

using Words = std::vector<std::string>;

const Words kAdj = {"quiet", "narrow", "old", "busy", "windy", "muddy", "bright", "crowded", "patient", "careful",
                    "distant", "small", "steep", "gentle", "rusty", "painted", "wooden", "grey", "early", "late"};
const Words kPlace = {"the valley", "the harbour", "the upper fields", "the market square", "the mill road",
                      "the river bend", "the north pasture", "the old quarry", "the village green", "the ferry landing",
                      "the hill farms", "the salt flats", "the orchard lanes", "the east bridge", "the forest edge"};
const Words kWho = {"the farmers", "the fishermen", "the traders", "the children", "the carters", "the shepherds",
                    "the weavers", "the travellers", "the millers", "the neighbours", "the masons", "the boatmen"};
const Words kThing = {"the hay", "the nets", "the fences", "the wagons", "the sheep", "the barrels", "the lanterns",
                      "the apples", "the roof tiles", "the firewood", "the grain sacks", "the ropes", "the stones"};
const Words kVerb = {"mended", "carried", "counted", "stacked", "cleaned", "sorted", "painted", "moved",
                     "checked", "loaded", "dried", "covered", "repaired", "gathered"};
const Words kTime = {"before the first frost", "after the spring rains", "during the long evenings",
                     "at the end of every week", "in the cool mornings", "whenever the tide was low",
                     "once the harvest was in", "on market days", "through most of the summer",
                     "when the wind turned north"};
const Words kWeather = {"a thin mist lay over", "a cold wind blew across", "soft rain fell on",
                        "the sun warmed", "low clouds hung above", "a dry heat settled on", "snow dusted"};
const Words kFeeling = {"nobody seemed to mind", "most people agreed it was worth the effort",
                        "it became a habit that lasted for years", "the work went slowly but steadily",
                        "it was hard to remember a time before it", "the older people said it had always been so",
                        "everyone took a turn sooner or later"};

const Words kCities = {"Aldermoor", "Brackenford", "Cindervale", "Dunmarsh", "Elderwick", "Fallowmere", "Glenhallow",
                       "Harrowby", "Ivybridge", "Juniper Cove", "Kestrelholm", "Larkspur", "Mossbank", "Northwold",
                       "Oakhaven", "Pebbleton", "Quarrytown", "Redfern", "Saltcombe", "Thornbury", "Umberleigh",
                       "Valewood", "Willowmere", "Yarrowfield", "Ashcombe", "Birchley", "Coldharbour", "Dovecot",
                       "Emberton", "Foxhollow", "Greystone", "Hollowell"};
const Words kFirst = {"Amara", "Bastian", "Celine", "Dorian", "Elsa", "Felix", "Greta", "Hugo", "Ilse", "Jasper",
                      "Kira", "Leon", "Mira", "Nils", "Orla", "Pavel", "Rosa", "Stellan", "Tilda", "Viggo",
                      "Wanda", "Yannick", "Zora", "Anton", "Britt", "Cyril", "Dagny", "Emeric"};
const Words kObjects = {"lantern", "compass", "teapot", "violin", "kite", "telescope", "bicycle", "umbrella",
                        "clock", "notebook", "basket", "hammer", "scarf", "mirror", "candle", "globe", "flute",
                        "saddle", "anchor", "quilt"};

template <class... P>
std::string cat(const P&... p) {
  std::string s;
  (s.append(p), ...);
  return s;
}

std::string cap(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

}  // namespace

uint64_t sample_seed(uint64_t seed, const std::string& task, int index) {
  return fnv1a(task.data(), task.size()) ^ (seed * 0x9e3779b97f4a7c15ULL) ^ (static_cast<uint64_t>(index) << 32);
}

int64_t approx_tokens(const std::string& s) { return static_cast<int64_t>((s.size() + 3) / 4); }

std::string random_uuid(Rng& r) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) s += '-';
    s += hex[r.below(16)];
  }
  return s;
}

std::string random_alnum(Rng& r, int n, bool lower_only) {
  static const std::string lower = "abcdefghijklmnopqrstuvwxyz0123456789";
  static const std::string all = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  const std::string& a = lower_only ? lower : all;
  std::string s;
  for (int i = 0; i < n; ++i) s += a[r.below(a.size())];
  return s;
}

std::string random_upper(Rng& r, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) s += static_cast<char>('A' + r.below(26));
  return s;
}

std::string random_digits(Rng& r, int n) {
  std::string s(1, static_cast<char>('1' + r.below(9)));
  for (int i = 1; i < n; ++i) s += static_cast<char>('0' + r.below(10));
  return s;
}

std::string filler_sentence(Rng& r) {
  switch (r.below(6)) {
    case 0:
      return cat(cap(r.pick(kWho)), " ", r.pick(kVerb), " ", r.pick(kThing), " near ", r.pick(kPlace), " ",
                 r.pick(kTime), ".");
    case 1:
      return cat(cap(r.pick(kTime)), ", ", r.pick(kWeather), " ", r.pick(kPlace), ", and ", r.pick(kFeeling), ".");
    case 2:
      return cat("The road to ", r.pick(kPlace).substr(4), " was ", r.pick(kAdj), " and ", r.pick(kAdj), ", so ",
                 r.pick(kWho), " ", r.pick(kVerb), " ", r.pick(kThing), " by hand.");
    case 3:
      return cat("In ", r.pick(kPlace), ", ", r.pick(kWho), " kept ", r.pick(kThing), " under a ", r.pick(kAdj),
                 " shed, and ", r.pick(kFeeling), ".");
    case 4:
      return cat(cap(r.pick(kWeather)), " ", r.pick(kPlace), " while ", r.pick(kWho), " ", r.pick(kVerb), " ",
                 r.pick(kThing), ".");
    default:
      return cat("Some said that ", r.pick(kWho), " of ", r.pick(kPlace), " ", r.pick(kVerb), " ", r.pick(kThing),
                 " more often than anyone else, though ", r.pick(kFeeling), ".");
  }
}

std::vector<std::string> filler_sentences(Rng& r, int64_t tokens, const TokenCounter& counter) {
  std::vector<std::string> out;
  int64_t n = 0;
  int left_in_par = r.range(3, 6);
  while (n < tokens) {
    std::string s = filler_sentence(r);
    if (--left_in_par == 0) {
      s += "\n\n";
      left_in_par = r.range(3, 6);
    } else {
      s += " ";
    }
    n += counter ? counter(s) : approx_tokens(s);
    out.push_back(std::move(s));
  }
  return out;
}

const std::vector<std::string>& city_names() { return kCities; }
const std::vector<std::string>& first_names() { return kFirst; }
const std::vector<std::string>& object_nouns() { return kObjects; }

}  // namespace kvz
