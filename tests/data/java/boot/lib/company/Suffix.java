package com.example.company;

public class Suffix {
    public static String of() {
        return " with a custom layer";
    }
}
