"""Word lists of the synthetic toy language.

Every word is one token of the toy tokenizer, written with GPT-2's leading-space convention
(" Mary"). Names are the IOI paper's kind of first names (Wang et al. 2022, appendix); the lists
grow with later replications.
"""

NAMES = (
    "Mary John Alice Bob Tom James Dan Sarah Emma Anna Paul Mark Lisa Kate Jack Rose Sam Lucy Ryan "
    "Laura Adam Grace Peter Helen Max Amy Ben Clara Leo Nina Eric Julia Victor Emily Oscar Maria Simon "
    "Ella Henry Sophie"
).split()
PLACES = "store school park garden station office beach library market hospital kitchen restaurant".split()
OBJECTS = "ring book bone kiss drink basketball computer necklace snack apple letter bottle".split()
NOUNS = (
    "house river tree window door road city mountain table chair cat dog horse bird song story lamp boat "
    "wall field cloud stone coin key box bag map hat coat shoe cup plate clock paper bell rope wheel tower "
    "bridge forest island lake village garden_path".replace("garden_path", "valley").split()
)
ADJECTIVES = ("old new red blue green small large quiet bright dark warm cold tall short heavy light "
              "happy sad clever gentle strange famous").split()
VERBS = ("saw found liked painted carried opened closed watched moved built cleaned visited remembered "
         "described followed").split()
FUNCTION = ("the a an and then but while because after before near with from into over under of to "
            "in on at by is was were had has it they he she we there this that very as items went").split()
PUNCT = [".", ",", ":", ";", "?", "!", "(", ")", "\"", "-", "="]
DIGITS2 = [f"{i:02d}" for i in range(100)]  # two-digit tokens, as GPT-2 splits years ("17" + "32")
CODE = "def return if else for x y z print value result".split()
SPECIAL = ["<|bos|>", "<|pad|>", "<|unk|>"]
