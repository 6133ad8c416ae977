/*
 * Who holds a file descriptor's lock on one host: a Promela model of VMFSCore's Session
 * (Session+Open.swift, Session+Namespace.swift), checked exhaustively with spin.
 *
 *   Tools/scripts/check-model.sh            (FIXED=1: the protocol as built; expects no error)
 *   Tools/scripts/check-model.sh --before   (FIXED=0: the protocol before issue 10; spin finds
 *                                            the double allocation and the leaked orphan)
 *
 * The on-disk descriptor lock is held per host: taking it again is a no-op, releasing it once
 * frees it. So the threads of one host must agree among themselves who holds it. One slot,
 * five threads: the kernel's RELEASE of a handle open at the start, two OPENs by inode that
 * write through the file and close it, an unlink, and a create that wants a free slot.
 *
 * Checked: (1) a thread writing through an open file finds its descriptor live and the lock
 * held: no block of it was freed meanwhile (freed blocks of a file still written are what
 * fsck.vmfs reported as "data block used twice"); (2) whoever frees or creates a file holds
 * the lock; (3) when everything is done no unlinked file is left in use (the leaked slot),
 * no lock is held without an owner, and nothing deadlocked (spin's end states).
 */
#ifndef FIXED
#define FIXED 1
#endif

bool lockHeld = true;    /* the slot's on-disk lock is held by this host */
bool inUse = true;       /* descriptor: in use */
bool orphan = false;     /* descriptor: unlinked, to be freed */
byte gen = 1;            /* descriptor: generation */
bool named = true;       /* a name entry points at generation 1 */
bool freed = false;      /* generation 1's blocks were given back */
bool registered = true;  /* an OpenFile exists for the slot ... */
byte handles = 1;        /* ... with this many handles */
bool orphaned = false;   /* OpenFile.orphaned: free at the last close */
bool claimed = false;    /* a create, remove or cleanup works on the slot */
bool slotMutex = false;  /* Session.slotLocks[slot] (before: openLocks, taken by open/close only) */
byte finished = 0;

inline lockSlot() { atomic { !slotMutex -> slotMutex = true } }
inline unlockSlot() { slotMutex = false }

/* Session.finishClose: the last handle closed (slot lock held). */
inline finishClose() {
    if
    :: orphaned -> assert(lockHeld); freed = true; inUse = false; orphan = false
    :: else -> skip
    fi;
    lockHeld = false;
    atomic { registered = false; orphaned = false }
}

/* Session.close of one handle (slot lock taken). */
inline closeHandle() {
    lockSlot();
    handles--;
    if
    :: handles == 0 -> finishClose()
    :: else -> skip
    fi;
    unlockSlot()
}

/* The kernel's RELEASE of the handle that was open when the model starts. */
proctype Release() {
    closeHandle();
    finished++
}

/* A FUSE OPEN by inode (generation 1), a write that stores the descriptor, a RELEASE. */
proctype OpenWriteClose() {
    bool opened = false;
    lockSlot();
    if
    :: FIXED && claimed -> skip                         /* notFound: being removed or created */
    :: else ->
        if
        :: registered && (FIXED || !orphaned) -> handles++; opened = true
        :: registered && !FIXED && orphaned -> skip     /* notFound */
        :: !registered ->
            lockHeld = true;                             /* acquire: a no-op if already held */
            if
            :: inUse && !orphan && gen == 1 -> atomic { registered = true; handles = 1 }; opened = true
            :: else -> lockHeld = false                  /* gone or reused: give the lock back */
            fi
        fi
    fi;
    unlockSlot();
    if
    :: opened ->
        assert(lockHeld && inUse && gen == 1 && !freed); /* (1) writes its descriptor back */
        closeHandle()
    :: else -> skip
    fi;
    finished++
}

/* unlink (under the file table lock): the name goes; the file is freed now, or at its last close. */
proctype Remove() {
    bool mine = false;
    if
    :: FIXED -> lockSlot()
    :: else -> skip
    fi;
    if
    :: registered ->
        atomic { named = false; orphan = true; orphaned = true }
    :: else ->
        atomic {
            if
            :: !registered && !claimed -> claimed = true; mine = true
            :: else -> skip                              /* EBUSY */
            fi
        };
        if
        :: mine ->
            lockHeld = true;
            assert(inUse && gen == 1);
            atomic { named = false; orphan = true }
        :: else -> skip
        fi
    fi;
    if
    :: FIXED -> unlockSlot()
    :: else -> skip
    fi;
    if
    :: mine ->                                           /* freeOrphan, claim still held */
        assert(lockHeld);                                /* (2) */
        freed = true; inUse = false; orphan = false;
        lockHeld = false;
        claimed = false
    :: else -> skip
    fi;
    finished++
}

/* create (under the file table lock): takes the slot if it is free by then. */
proctype Create() {
    bool mine = false;
    atomic {
        if
        :: !inUse && !registered && !claimed && (!FIXED || !slotMutex) -> claimed = true; mine = true
        :: else -> skip                                  /* not free: another slot */
        fi
    };
    if
    :: mine ->
        lockHeld = true;
        if
        :: !inUse -> gen = 2; inUse = true; assert(lockHeld)  /* (2) the new descriptor */
        :: else -> skip
        fi;
        lockHeld = false;
        claimed = false
    :: else -> skip
    fi;
    finished++
}

init {
    atomic {
        run Release();
        run OpenWriteClose();
        run OpenWriteClose();
        run Remove();
        run Create()
    }
    finished == 5;
    assert(!(inUse && orphan));                          /* (3) no unlinked file left in use */
    assert(!lockHeld);                                   /* (3) no lock held without an owner */
    assert(!registered && !claimed)
}
