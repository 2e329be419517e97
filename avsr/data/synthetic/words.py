"""Common English words, grouped by part of speech, for the open-vocabulary text domain.

Written by hand for this project (no external list): everyday nouns, adjectives, verbs (with
their past forms), adverbs and function words, so that sentence templates read as English.
Every word is plain lower-case letters, and every word is spoken by espeak as exactly one word
event (checked by ``tests/test_synthetic.py`` on a sample and when the corpus is generated).
"""

from __future__ import annotations

__all__ = [
    "NOUNS",
    "ADJECTIVES",
    "TRANSITIVE_VERBS",
    "INTRANSITIVE_VERBS",
    "ADVERBS",
    "TIME_ADVERBS",
    "DEGREE_ADVERBS",
    "PREPOSITIONS",
    "SUBJECTS",
    "POSSESSIVES",
    "MODALS",
    "vocabulary",
]


def _words(block: str) -> tuple[str, ...]:
    # Keep first occurrences only, so an accidental repeat cannot skew sampling.
    return tuple(dict.fromkeys(block.split()))


def _pairs(block: str) -> tuple[tuple[str, str], ...]:
    # "base/past" tokens: the past form is written out because English pasts are irregular.
    out = []
    for token in dict.fromkeys(block.split()):
        base, past = token.split("/")
        out.append((base, past))
    return tuple(out)


NOUNS = _words("""
    time year people way day man woman child world life hand part place case week company
    system program question work government number night point home water room mother area
    money story fact month lot right study book eye job word business issue side kind head
    house service friend father power hour game line end member law car city community name
    president team minute idea kid body information back parent face others level office door
    health person art war history party result change morning reason research girl guy moment
    air teacher force education foot boy age policy process music market sense nation plan
    college interest death experience effect class control care field development role effort
    rate heart drug show leader light voice wife police mind price report decision son view
    relationship town road arm difference value building action model season society tax
    director position player record paper space ground form event official matter center couple
    site project activity star table need court oil situation cost industry figure street image
    phone data picture practice piece land product doctor wall patient worker news test movie
    north love support technology step baby computer type attention film tree source
    organization hair window evidence population site truth role career pressure ball letter
    nature ability energy skill floor bed bank garden army camera dinner wind animal glass
    chair river weather brother sister daughter husband cousin uncle aunt neighbor student
    island forest mountain valley ocean lake beach desert village farm field shop market kitchen
    bedroom bathroom garage basement roof stairs hallway window curtain carpet pillow blanket
    sofa lamp clock mirror shelf drawer cupboard fridge oven stove sink towel soap brush comb
    bottle cup plate bowl spoon fork knife pan pot kettle jar basket bucket box bag purse wallet
    coin ticket key lock chain rope string wire pipe tube hose ladder hammer nail screw tool
    machine engine motor wheel tire bicycle truck bus train plane boat ship rocket station
    airport harbor bridge tunnel highway path track corner sign signal map guide driver pilot
    captain sailor soldier officer guard judge lawyer nurse dentist farmer baker cook chef
    waiter singer dancer artist writer author poet painter actor editor reporter manager
    engineer scientist banker pilot clerk tailor builder plumber gardener hunter fisher
    king queen prince princess knight castle tower palace temple church school library museum
    theater hospital hotel restaurant cafe bakery pharmacy factory prison stadium gym park zoo
    apple banana orange lemon grape cherry peach pear plum melon berry tomato potato carrot onion
    garlic pepper bean pea corn rice bread butter cheese milk cream egg sugar salt honey flour
    soup salad sandwich pizza pasta noodle cake cookie pie candy chocolate coffee tea juice
    wine beer meat chicken beef pork fish shrimp breakfast lunch supper meal snack dessert
    dog cat horse cow pig sheep goat rabbit mouse rat bird duck goose chicken eagle owl crow
    parrot fish shark whale dolphin frog snake turtle lizard bee ant spider fly butterfly
    lion tiger bear wolf fox deer monkey elephant giraffe zebra camel donkey squirrel
    flower rose grass leaf branch root seed bush plant weed stone rock sand dust mud soil clay
    fire smoke flame ash ice snow rain storm cloud thunder lightning fog sky sun moon planet
    earth wave tide shore coast hill cliff cave meadow pond stream spring autumn winter summer
    shirt dress skirt coat jacket sweater hat cap scarf glove sock shoe boot belt button pocket
    collar sleeve ring necklace watch umbrella suitcase backpack blanket uniform costume
    pen pencil paper notebook envelope stamp card note page chapter novel poem song tune drum
    piano guitar violin trumpet flute radio television screen keyboard printer battery cable
    camera photo painting drawing statue poster magazine newspaper journal diary calendar
    address message email letter parcel package gift present prize medal trophy
    finger thumb wrist elbow shoulder knee ankle toe heel leg neck chest stomach back skin bone
    blood brain tooth tongue lip nose ear cheek chin forehead beard mustache throat lung
    hunger thirst fever cough cold pain wound scar illness medicine pill doctor
    friendship kindness courage honesty patience wisdom freedom justice peace anger fear joy
    sadness surprise pride shame hope trust faith luck chance risk danger safety comfort
    silence noise sound echo whisper shout laugh smile tear dream memory thought feeling
    belief opinion advice answer problem solution mistake error success failure victory
    defeat battle fight argument agreement promise secret lie joke riddle puzzle mystery
    adventure journey trip holiday vacation weekend birthday wedding funeral party festival
    concert parade meeting lesson lecture exam course degree grade subject topic language
    science math physics chemistry biology geography economics politics religion culture
    tradition custom habit routine schedule deadline budget salary profit loss debt loan
    account contract deal trade sale purchase customer client owner partner boss staff
    crowd audience group family tribe nation country state province region county border
    capital kingdom empire colony century decade future past present beginning middle
    moment second evening afternoon midnight noon dawn sunset sunrise daylight darkness
    shadow color shape size weight height length width depth speed distance direction
    surface edge center circle square triangle line dot spot stripe pattern design style
    fashion taste smell touch sight view scene landscape picture portrait frame border
    material metal iron steel gold silver copper wood plastic rubber cotton wool silk leather
    glass paint ink oil gas fuel coal steam electricity battery magnet
    kitten puppy lamb calf foal chick insect worm snail beetle mosquito
    stranger visitor guest host neighbor citizen hero villain victim witness suspect thief
    champion winner loser rival enemy ally leader follower beginner expert master servant
    teenager adult elder infant toddler grandmother grandfather grandson granddaughter nephew
    niece twin bride groom widow orphan
    answer dollar penny cent price bill receipt wage fee tip coin
    forest jungle swamp volcano glacier canyon plain prairie horizon universe galaxy comet
    apartment cottage cabin tent hut barn shed fence gate wall yard lawn porch balcony attic
    cellar chimney fireplace corridor elevator escalator staircase doorway window ceiling
    desk bench stool cabinet closet wardrobe mattress sheet quilt candle lantern torch flashlight
    needle thread button zipper ribbon lace fabric cloth blanket rag sponge bucket broom mop
    shovel rake axe saw drill wrench bolt hinge handle knob lever switch button socket plug
    helmet mask badge flag banner label tag sticker ribbon crown sword shield arrow bow spear
    cannon rifle pistol bullet armor anchor sail oar paddle canoe raft yacht ferry submarine
    tractor wagon cart carriage taxi van jeep ambulance helicopter jet balloon parachute
    compass telescope microscope lens magnifier thermometer scale ruler calculator
    alarm bell whistle horn siren buzzer doorbell telephone speaker microphone headphone
    album record tape disk file folder document form chart graph table list menu recipe
    ingredient spice herb vinegar mustard ketchup sauce gravy jam jelly syrup yogurt biscuit
    cracker muffin pancake waffle toast cereal oatmeal omelet bacon sausage ham steak burger
    lettuce cabbage spinach broccoli celery cucumber pumpkin mushroom olive peanut walnut
    almond coconut pineapple mango strawberry raspberry blueberry apricot avocado lime
    hamster goldfish pony kangaroo koala panda penguin seal walrus otter beaver raccoon
    skunk hedgehog bat moth wasp hornet cricket grasshopper dragonfly ladybug caterpillar
    swan pigeon sparrow robin hawk falcon vulture peacock turkey rooster hen ostrich
    salmon trout tuna cod octopus squid crab lobster oyster jellyfish starfish coral
    oak pine maple willow birch palm cactus vine ivy moss fern tulip daisy lily orchid
    blossom petal thorn trunk bark twig log stump acorn
    breeze gust hurricane tornado flood drought earthquake avalanche rainbow sunshine frost
    puddle rainfall hailstorm blizzard heatwave
    athlete coach referee umpire captain goalkeeper runner swimmer climber skier jockey
    professor principal tutor pupil scholar librarian historian inventor explorer astronaut
    detective spy sheriff mayor governor senator minister ambassador diplomat emperor
    merchant shopkeeper cashier butcher grocer carpenter mechanic electrician firefighter
    surgeon therapist pharmacist veterinarian midwife secretary receptionist janitor
    photographer musician composer conductor pianist drummer comedian magician clown
    soccer football baseball basketball tennis golf hockey cricket boxing chess cards
    marathon race match tournament league score goal point round lap
    hobby craft sport exercise workout yoga jogging dancing swimming fishing hunting camping
        """)

ADJECTIVES = _words("""
    good new first last long great little own other old right big high different small large
    next early young important few public bad same able late hard major better economic
    strong possible whole free military true federal international full special easy clear
    recent certain personal open red difficult available likely short single medical current
    wrong private past foreign fine common poor natural significant similar hot dead central
    happy serious ready simple left physical general environmental financial blue democratic
    dark various entire close legal religious cold final main green nice huge popular
    traditional cultural wide deep warm cool quiet loud soft gentle rough smooth sharp dull
    bright pale heavy light thick thin narrow broad tall tiny giant fat slim empty busy lazy
    calm angry brave bold clever smart wise silly stupid funny strange odd weird normal
    rare usual famous rich cheap expensive dirty clean wet dry fresh sweet sour bitter salty
    spicy tasty delicious raw ripe rotten healthy sick ill tired sleepy hungry thirsty
    proud shy nervous afraid scared worried careful careless honest polite rude kind cruel
    friendly lonely lucky unlucky useful useless perfect terrible awful lovely beautiful
    pretty ugly handsome cute elegant plain fancy modern ancient new neat messy quick slow
    fast sudden gradual eager keen curious jealous grateful generous selfish humble modest
    gentle fierce wild tame loyal faithful sacred holy silent noisy empty crowded lively
    dull boring exciting interesting amazing wonderful horrible pleasant nasty strict
    fair unfair equal rapid steady stable solid hollow flat round square straight curved
    crooked wooden golden silver purple orange yellow brown pink gray black white violet
    frozen burning shiny dusty muddy sandy rocky sunny rainy windy cloudy foggy snowy stormy
    icy northern southern eastern western local national royal rural urban coastal tropical
    electric digital mobile global useful secret hidden obvious famous distant nearby
    complete broken fixed missing spare extra total basic modern classic typical
    ideal proper formal casual regular daily weekly monthly annual brief endless
    chief junior senior former future recent sudden eventual mild severe gentle violent
    fragile sturdy tough tender firm loose tight slippery sticky hairy bald curly
    mighty weak powerful helpless clumsy graceful awkward calm cheerful gloomy merry
    anxious relaxed patient restless hopeful hopeless sincere fake genuine brilliant
    tidy shabby cozy spacious cramped grand humble splendid magnificent gorgeous charming
    delightful dreadful ghastly gloomy eerie spooky mysterious magical marvelous fabulous
    precious valuable worthless costly affordable generous greedy stubborn flexible rigid
    elastic fluffy fuzzy furry silky woolly leafy grassy hilly flat steep shallow vast
    compact massive slender skinny plump chubby muscular sturdy frail feeble vigorous
    energetic sluggish drowsy alert awake asleep alive hungry starving thirsty juicy crispy
    crunchy creamy smoky bland savory fragrant stinky smelly noisy sleek glossy faded
    vivid colorful striped spotted checkered dotted narrow wealthy needy famous unknown
    familiar foreign exotic native ordinary unusual remarkable peculiar curious
    """)

TRANSITIVE_VERBS = _pairs("""
    take/took make/made find/found give/gave tell/told ask/asked use/used call/called
    keep/kept bring/brought hold/held write/wrote read/read hear/heard meet/met pay/paid
    build/built buy/bought send/sent carry/carried catch/caught choose/chose draw/drew
    drive/drove eat/ate feed/fed fill/filled fix/fixed follow/followed forget/forgot
    hide/hid hit/hit help/helped join/joined kick/kicked kill/killed kiss/kissed know/knew
    lead/led learn/learned leave/left lend/lent lift/lifted like/liked lose/lost love/loved
    mark/marked move/moved need/needed open/opened order/ordered paint/painted pass/passed
    pick/picked plant/planted play/played pull/pulled push/pushed raise/raised reach/reached
    remember/remembered repair/repaired save/saved see/saw sell/sold serve/served
    shake/shook share/shared shut/shut sign/signed sing/sang steal/stole strike/struck
    study/studied teach/taught throw/threw touch/touched train/trained visit/visited
    wash/washed watch/watched wear/wore win/won wrap/wrapped answer/answered borrow/borrowed
    break/broke burn/burned check/checked clean/cleaned close/closed collect/collected
    count/counted cover/covered cross/crossed cut/cut deliver/delivered describe/described
    destroy/destroyed discover/discovered drop/dropped enjoy/enjoyed explain/explained
    grab/grabbed guard/guarded hang/hung hate/hated invite/invited lock/locked mix/mixed
    notice/noticed offer/offered own/owned pack/packed prepare/prepared protect/protected
    receive/received rescue/rescued return/returned ring/rang shoot/shot show/showed
    solve/solved spend/spent test/tested throw/threw trust/trusted wake/woke want/wanted
    water/watered welcome/welcomed bake/baked boil/boiled cook/cooked fry/fried peel/peeled
    slice/sliced chop/chopped pour/poured stir/stirred taste/tasted smell/smelled
    climb/climbed cross/crossed chase/chased follow/followed hunt/hunted ride/rode
    sail/sailed fly/flew steer/steered park/parked load/loaded fold/folded iron/ironed
    polish/polished sweep/swept dig/dug plant/planted pick/picked bury/buried
    count/counted measure/measured weigh/weighed compare/compared copy/copied print/printed
    type/typed record/recorded film/filmed design/designed invent/invented create/created
    improve/improved change/changed replace/replaced remove/removed add/added
    attack/attacked defend/defended beat/beat chase/chased
    admire/admired praise/praised blame/blamed forgive/forgave warn/warned thank/thanked
    accept/accepted refuse/refused allow/allowed prevent/prevented avoid/avoided
    support/supported manage/managed control/controlled direct/directed guide/guided
    imagine/imagined believe/believed understand/understood consider/considered
    expect/expected prefer/preferred miss/missed finish/finished start/started
    open/opened lift/lifted hug/hugged greet/greeted call/called email/emailed text/texted
    attach/attached detach/detached fasten/fastened tie/tied untie/untied knit/knitted
    sew/sewed weave/wove stitch/stitched mend/mended patch/patched glue/glued tape/taped
    scrub/scrubbed rinse/rinsed dry/dried wipe/wiped dust/dusted vacuum/vacuumed
    squeeze/squeezed stretch/stretched bend/bent twist/twisted turn/turned spin/spun
    roll/rolled toss/tossed flip/flipped drag/dragged tow/towed haul/hauled carry/carried
    spill/spilled splash/splashed soak/soaked drown/drowned heat/heated chill/chilled
    freeze/froze thaw/thawed warm/warmed cool/cooled light/lit blow/blew
    examine/examined inspect/inspected observe/observed study/studied explore/explored
    search/searched locate/located identify/identified recognize/recognized
    announce/announced declare/declared mention/mentioned report/reported repeat/repeated
    memorize/memorized practice/practiced rehearse/rehearsed perform/performed
    decorate/decorated arrange/arranged organize/organized plan/planned schedule/scheduled
    cancel/canceled postpone/postponed delay/delayed hire/hired fire/fired pay/paid
    rent/rented lease/leased mail/mailed post/posted fetch/fetched bring/brought
    feed/fed milk/milked ride/rode tame/tamed pet/petted adopt/adopted raise/raised
    """)

INTRANSITIVE_VERBS = _pairs("""
    go/went come/came run/ran walk/walked sit/sat stand/stood sleep/slept wait/waited
    laugh/laughed cry/cried smile/smiled talk/talked listen/listened arrive/arrived
    leave/left fall/fell rise/rose swim/swam dance/danced jump/jumped climb/climbed
    travel/traveled work/worked rest/rested play/played shout/shouted whisper/whispered
    sing/sang stay/stayed return/returned escape/escaped disappear/disappeared
    appear/appeared grow/grew shine/shone glow/glowed burn/burned melt/melted freeze/froze
    float/floated sink/sank drift/drifted hurry/hurried rush/rushed crawl/crawled
    wander/wandered march/marched hike/hiked skate/skated ski/skied dive/dove
    agree/agreed argue/argued complain/complained pray/prayed vote/voted
    breathe/breathed sneeze/sneezed cough/coughed yawn/yawned shiver/shivered
    nod/nodded blink/blinked frown/frowned grin/grinned giggle/giggled sigh/sighed
    wink/winked kneel/knelt lean/leaned bow/bowed wave/waved clap/clapped cheer/cheered
    gather/gathered scatter/scattered settle/settled relax/relaxed recover/recovered
    improve/improved succeed/succeeded fail/failed quit/quit retire/retired
    collapse/collapsed explode/exploded vanish/vanished wobble/wobbled tremble/trembled
    bounce/bounced roll/rolled slide/slid slip/slipped trip/tripped stumble/stumbled
    """)

ADVERBS = _words("""
    quickly slowly quietly loudly carefully gently softly happily sadly easily badly
    suddenly finally early late together alone outside inside upstairs downstairs abroad
    away home nearby everywhere somewhere here there forward backward politely proudly
    bravely calmly eagerly angrily firmly kindly neatly silently warmly well hard fast
    briefly brightly clearly closely deeply fairly freely fully gladly greatly highly
    honestly lightly loosely nearly openly partly perfectly poorly properly rarely roughly
    safely simply smoothly sharply strongly surely tightly truly wisely wildly barely
    boldly cheerfully clumsily gracefully hungrily lazily loyally nervously patiently
        """)

TIME_ADVERBS = _words("""
    today tonight yesterday tomorrow again now soon later then already recently
    """)

DEGREE_ADVERBS = _words("very quite rather really too so extremely fairly pretty truly")

PREPOSITIONS = _words("""
    in on at by with near under over behind beside between into onto across through
    around along above below inside outside toward past from without beyond
    """)

SUBJECTS = _words("i you we they he she")

POSSESSIVES = _words("my your our their his her")

MODALS = _words("will can should might must could would")

# Words the templates themselves spell out (articles, auxiliaries, conjunctions...).
TEMPLATE_WORDS = _words("""
    the a an and but or because while when if that this these those there was were is are
    did do does not never always often sometimes to of for about just still also
    think thought want wanted hope hoped know knew said say saw see
    """)


def vocabulary() -> set[str]:
    """Every distinct word the open domain can produce (lower case)."""
    words: set[str] = set()
    for group in (NOUNS, ADJECTIVES, ADVERBS, TIME_ADVERBS, DEGREE_ADVERBS, PREPOSITIONS,
                  SUBJECTS, POSSESSIVES, MODALS, TEMPLATE_WORDS):
        words.update(group)
    for pairs in (TRANSITIVE_VERBS, INTRANSITIVE_VERBS):
        for base, past in pairs:
            words.update((base, past))
    return words
