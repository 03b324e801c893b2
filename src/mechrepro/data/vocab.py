"""Word lists of the synthetic toy language.

Every word is one token of the toy tokenizer, written with GPT-2's leading-space convention
(" Mary"). Names are the IOI paper's kind of first names (Wang et al. 2022, appendix A); event
nouns are Hanna et al. 2023's kind ("The war lasted from the year 1732 to the year 17").
"""

NAMES = (
    "Mary John Alice Bob Tom James Dan Sarah Emma Anna Paul Mark Lisa Kate Jack Rose Sam Lucy Ryan "
    "Laura Adam Grace Peter Helen Max Amy Ben Clara Leo Nina Eric Julia Victor Emily Oscar Maria Simon "
    "Ella Henry Sophie "
    # added for the IOI family: more names, so that name identity cannot be memorised per template
    "Michael David Robert William Richard Thomas Charles Daniel Matthew Anthony Steven Andrew Joshua "
    "Kevin Brian George Edward Jason Jeff Frank Scott Justin Brandon Patrick Alex Jessica Jennifer "
    "Elizabeth Susan Karen Nancy Betty Sandra Ashley Donna Michelle Carol Amanda Melissa Deborah "
    "Stephanie Rebecca Sharon Cynthia Kathleen Angela Anne Alan Carl Arthur Roger Harry Jacob"
).split()
PLACES = ("store school park garden station office beach library market hospital kitchen restaurant "
          "church museum farm").split()
OBJECTS = "ring book bone kiss drink basketball computer necklace snack apple letter bottle".split()
NOUNS = (
    "house river tree window door road city mountain table chair cat dog horse bird song story lamp boat "
    "wall field cloud stone coin key box bag map hat coat shoe cup plate clock paper bell rope wheel tower "
    "bridge forest island lake village valley"
).split()
ADJECTIVES = ("old new red blue green small large quiet bright dark warm cold tall short heavy light "
              "happy sad clever gentle strange famous long").split()
VERBS = ("saw found liked painted carried opened closed watched moved built cleaned visited remembered "
         "described followed").split()
FUNCTION = ("the a an and then but while because after before near with from into over under of to "
            "in on at by is was were had has it they he she we there this that very as items went when").split()
# IOI-style narratives (templates in mechrepro.data.templates)
IOI_WORDS = ("gave give handed hand sent send brought bring passed pass threw throw decided wanted "
             "got fun working walking thinking about going lot afterwards said talked argument "
             "lunch friends").split()
# Durations with years (Hanna et al. 2023)
EVENTS = ("war expedition siege reign voyage famine festival trial journey strike drought campaign "
          "rebellion occupation dynasty pilgrimage").split()
YEAR_WORDS = "year lasted ran started began ended continued until time".split()
DIALOGUE = "asked replied told yes no hello thanks where what who please".split()
ARITHMETIC = "plus minus equals".split()
# Capitalised forms used at sentence starts
SENTENCE_STARTS = "The A Then After When While Afterwards Friends From Yes No Hello".split()
PUNCT = [".", ",", ":", ";", "?", "!", "(", ")", "\"", "-", "="]
DIGITS2 = [f"{i:02d}" for i in range(100)]  # two-digit tokens, as GPT-2 splits years ("17" + "32")
CODE = "def return if else for x y z print value result".split()
SPECIAL = ["<|bos|>", "<|pad|>", "<|unk|>"]
