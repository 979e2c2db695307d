package demo;

/** What the server answers; in a jar of its own in the directory-of-jars case. */
public class Body {
    public static String text() {
        return "plain jar on java " + Runtime.version().feature();
    }
}
